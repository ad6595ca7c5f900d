// sonify's page: the text lights up word by word as the music plays.
// One script for the file page (data and audio inside the page) and the live page (data over
// a websocket as each word sounds). The highlight follows a clock read on every animation
// frame: the audio element's own position, or in a live set the time the server last sent.
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const data = JSON.parse($("sonify-data").textContent);
  const live = Boolean(data.live);
  const audio = $("audio");
  const textEl = $("text");
  const tip = $("tip");
  const canvas = $("lanes");
  const dock = $("dock");
  const playButton = $("play");
  const scrub = $("scrub");
  const clockEl = $("clock");
  const statusEl = $("status");
  const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
  const LIVE_MAX_WORDS = 4000; // a live set runs for hours: the page keeps the last words only
  const LIVE_TRIM = 1000;
  const LIVE_MAX_AHEAD = 1.5; // seconds the live clock runs on without word from the server

  const words = []; // {text, start, end, tokens, newlines}
  const wordEls = [];
  let wordBase = 0; // words dropped from the start (live pages only)
  const tokens = new Map(); // cue index -> token record
  const tokenOrder = []; // cue indices in time order
  const notes = []; // [time, duration, pitch, velocity, voice]; duration null while held
  const openNotes = new Map();
  let voices = data.voices || [];
  let duration = data.duration || 0;
  const layerMax = [];
  let surprisalMax = 8;
  let saidUpTo = 0; // the words before this index are marked as said
  let litWord = -1;
  let stanzaEl = null;
  let lineEl = null;
  let userScrolledAt = -1e9;
  let dirty = true;
  let lastDrawn = NaN;
  let liveT = 0;
  let liveAt = null;
  let liveRunning = false;
  let dragging = false; // the position slider is being dragged
  let ended = false; // the live performance has ended

  // ------------------------------------------------------------------ the text

  function newStanza() {
    stanzaEl = document.createElement("div");
    stanzaEl.className = "stanza";
    textEl.appendChild(stanzaEl);
    lineEl = null;
  }

  function newLine() {
    if (!stanzaEl) newStanza();
    lineEl = document.createElement("p");
    lineEl.className = "line";
    stanzaEl.appendChild(lineEl);
    return lineEl;
  }

  function appendWord(word, breaksBefore) {
    if (!stanzaEl || breaksBefore >= 2) newStanza();
    if (!lineEl || breaksBefore >= 1) newLine();
    else lineEl.appendChild(document.createTextNode(" "));
    const el = document.createElement("span");
    el.className = "w";
    el.textContent = word.text;
    el.dataset.i = String(wordBase + words.length);
    lineEl.appendChild(el);
    words.push(word);
    wordEls.push(el);
    return el;
  }

  function addToken(index, record) {
    tokens.set(index, record);
    tokenOrder.push(index);
    if (record.surprisal !== null && record.surprisal > surprisalMax) surprisalMax = record.surprisal;
    if (record.entropy !== null && record.entropy > surprisalMax) surprisalMax = record.entropy;
    (record.layers || []).forEach((u, l) => {
      if (u !== null && !(layerMax[l] >= u)) layerMax[l] = u;
    });
  }

  function wordAt(t) {
    // The last word that has started by t (binary search over the starts).
    let lo = 0;
    let hi = words.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (words[mid].start <= t) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  function setPosition(k, t) {
    // k: the last word that has started. It is lit until its end; the words before it (and
    // it, once over) are marked as said.
    const lit = k >= 0 && t < words[k].end ? k : -1;
    const done = lit >= 0 ? k : k + 1;
    if (done !== saidUpTo) {
      const high = Math.min(Math.max(done, saidUpTo), wordEls.length);
      for (let i = Math.max(Math.min(done, saidUpTo), 0); i < high; i++) wordEls[i].classList.toggle("said", i < done);
      saidUpTo = done;
    }
    if (lit !== litWord) {
      if (litWord >= 0 && litWord < wordEls.length) wordEls[litWord].classList.remove("lit");
      litWord = lit;
      if (lit >= 0) {
        wordEls[lit].classList.add("lit");
        follow(wordEls[lit]);
      }
    }
  }

  function follow(el) {
    if (performance.now() - userScrolledAt < 2500) return;
    const box = el.getBoundingClientRect();
    const bottom = window.innerHeight - dock.offsetHeight;
    if (box.top >= 8 && box.bottom <= bottom - 8) return;
    const target = window.scrollY + box.top - bottom * 0.4;
    window.scrollTo({ top: Math.max(0, target), behavior: reducedMotion.matches ? "auto" : "smooth" });
  }

  for (const event of ["wheel", "touchmove"]) {
    window.addEventListener(event, () => { userScrolledAt = performance.now(); }, { passive: true });
  }

  // ------------------------------------------------------------------ the clock

  function now() {
    if (!live) return audio ? audio.currentTime : 0;
    if (liveAt === null) return 0;
    const ahead = liveRunning ? Math.min((performance.now() - liveAt) / 1000, LIVE_MAX_AHEAD) : 0;
    return liveT + ahead;
  }

  function seek(t) {
    if (live || !audio) return;
    const end = Number.isFinite(audio.duration) ? audio.duration : duration;
    audio.currentTime = Math.max(0, Math.min(t, end));
    dirty = true;
  }

  function seekWord(step) {
    if (!words.length) return;
    const t = now();
    let k = wordAt(t + 1e-3);
    if (step > 0) k = Math.min(k + 1, words.length - 1);
    else if (k >= 0 && t - words[k].start < 0.3) k = Math.max(k - 1, 0);
    seek(words[Math.max(k, 0)].start + 1e-3);
  }

  function toggle() {
    if (live || !audio) return;
    if (audio.paused) {
      audio.play().catch((err) => { statusEl.textContent = `cannot play: ${err.message}`; });
    } else audio.pause();
  }

  function clockText(t) {
    const m = Math.floor(t / 60);
    const s = t - m * 60;
    return `${m}:${s.toFixed(1).padStart(4, "0")}`;
  }

  // ------------------------------------------------------------------ the lanes

  const LANES = [
    { label: "surprisal · entropy", share: 0.26 },
    { label: "attention spread", share: 0.14 },
    { label: "layer activity", share: 0.2 },
    { label: "notes", share: 0.4 },
  ];
  const COLOURS = { surprisal: "#ff6b6b", entropy: "#4ea1ff", attention: "#5fd38d", layers: "255,169,77" };

  function buildLegend() {
    const legend = $("legend");
    legend.textContent = "";
    const entries = [
      ["surprisal", COLOURS.surprisal], ["entropy", COLOURS.entropy], ["attention spread", COLOURS.attention],
      ["layer activity", `rgb(${COLOURS.layers})`],
    ].concat(voices.map((v) => [v.name, v.colour]));
    for (const [name, colour] of entries) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = colour;
      item.append(swatch, name);
      legend.appendChild(item);
    }
  }

  function firstTokenEnding(after) {
    let lo = 0;
    let hi = tokenOrder.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (tokens.get(tokenOrder[mid]).end <= after) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function draw(t) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const span = Math.max(6, Math.min(30, width / 45));
    const t0 = t - span * 0.3;
    const t1 = t0 + span;
    const x = (time) => ((time - t0) / span) * width;
    const style = getComputedStyle(document.documentElement);
    const grid = style.getPropertyValue("--grid").trim() || "#333";
    const dim = style.getPropertyValue("--dim").trim() || "#888";
    let top = 0;
    const lanes = LANES.map((lane) => {
      const h = lane.share * height;
      const box = { y: top, h };
      top += h;
      return box;
    });
    g.strokeStyle = grid;
    g.lineWidth = 1;
    for (let s = Math.ceil(t0); s <= t1; s++) {
      if (s % 5 !== 0) continue;
      g.beginPath();
      g.moveTo(x(s) + 0.5, 0);
      g.lineTo(x(s) + 0.5, height);
      g.stroke();
    }
    for (const lane of lanes.slice(1)) {
      g.beginPath();
      g.moveTo(0, lane.y + 0.5);
      g.lineTo(width, lane.y + 0.5);
      g.stroke();
    }
    const first = firstTokenEnding(t0);
    const visible = [];
    for (let i = first; i < tokenOrder.length; i++) {
      const tok = tokens.get(tokenOrder[i]);
      if (tok.start > t1) break;
      visible.push(tok);
    }
    // surprisal and entropy, as steps
    const [l1, l2, l3, l4] = lanes;
    const pad = 3;
    for (const key of ["entropy", "surprisal"]) {
      g.strokeStyle = COLOURS[key];
      g.lineWidth = 1.5;
      g.beginPath();
      let started = false;
      for (const tok of visible) {
        const v = tok[key];
        if (v === null || v === undefined) { started = false; continue; }
        const y = l1.y + l1.h - pad - (Math.min(v, surprisalMax) / surprisalMax) * (l1.h - 2 * pad);
        if (!started) g.moveTo(x(tok.start), y);
        else g.lineTo(x(tok.start), y);
        g.lineTo(x(tok.end), y);
        started = true;
      }
      g.stroke();
    }
    // attention spread, as bars
    g.fillStyle = COLOURS.attention;
    for (const tok of visible) {
      if (tok.attention === null || tok.attention === undefined) continue;
      const h = Math.max(0, Math.min(1, tok.attention)) * (l2.h - 2 * pad);
      g.globalAlpha = 0.75;
      g.fillRect(x(tok.start), l2.y + l2.h - pad - h, Math.max(1, x(tok.end) - x(tok.start) - 1), h);
    }
    g.globalAlpha = 1;
    // layer activity: a row per layer (the first at the bottom), brightness by each layer's own maximum
    const layerCount = layerMax.length;
    if (layerCount) {
      const rowH = (l3.h - 2 * pad) / layerCount;
      for (const tok of visible) {
        const xs = x(tok.start);
        const w = Math.max(1, x(tok.end) - xs);
        (tok.layers || []).forEach((u, l) => {
          if (u === null || !(layerMax[l] > 0)) return;
          g.fillStyle = `rgba(${COLOURS.layers},${(0.08 + 0.92 * (u / layerMax[l])).toFixed(3)})`;
          g.fillRect(xs, l3.y + l3.h - pad - (l + 1) * rowH, w, Math.max(1, rowH - 0.5));
        });
      }
    }
    // the notes, as a piano roll
    let low = 127;
    let high = 0;
    for (const n of notes) {
      if (n[2] < low) low = n[2];
      if (n[2] > high) high = n[2];
    }
    if (notes.length) {
      low -= 1;
      high += 1;
      const range = Math.max(high - low, 12);
      const rowH = (l4.h - 2 * pad) / range;
      for (const n of notes) {
        const end = n[1] === null ? t : n[0] + n[1];
        if (n[0] > t1 || end < t0) continue;
        const voice = voices[n[4]];
        g.fillStyle = voice ? voice.colour : "#999";
        g.globalAlpha = 0.35 + 0.65 * (n[3] / 127);
        const y = l4.y + l4.h - pad - (n[2] - low + 1) * rowH;
        g.fillRect(x(n[0]), y, Math.max(2, x(end) - x(n[0])), Math.max(2, rowH - 1));
      }
      g.globalAlpha = 1;
    }
    // labels and the cursor
    g.font = "11px system-ui, sans-serif";
    const panel = style.getPropertyValue("--panel").trim() || "#000";
    LANES.forEach((lane, k) => {
      g.globalAlpha = 0.8;
      g.fillStyle = panel;
      g.fillRect(2, lanes[k].y + 2, g.measureText(lane.label).width + 6, 13);
      g.globalAlpha = 1;
      g.fillStyle = dim;
      g.fillText(lane.label, 5, lanes[k].y + 12);
    });
    g.strokeStyle = style.getPropertyValue("--ink").trim() || "#fff";
    g.lineWidth = 1.5;
    g.beginPath();
    g.moveTo(x(t), 0);
    g.lineTo(x(t), height);
    g.stroke();
  }

  canvas.addEventListener("click", (event) => {
    if (live) return;
    const box = canvas.getBoundingClientRect();
    const span = Math.max(6, Math.min(30, box.width / 45));
    const t = now();
    seek(t - span * 0.3 + ((event.clientX - box.left) / box.width) * span);
  });

  // ------------------------------------------------------------------ the tooltip

  function shown(text) {
    return text.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5");
  }

  function percent(p) {
    const x = (p || 0) * 100;
    return `${x >= 10 ? x.toFixed(0) : x >= 1 ? x.toFixed(1) : x.toPrecision(2)}%`;
  }

  function markHeading(line) {
    // A Markdown heading's leading # is part of the text (it sounds) but shown faint.
    line.classList.add("heading");
    const first = line.querySelector(".w");
    if (first && /^#+$/.test(first.textContent)) first.classList.add("mark");
  }

  function fixed(v, digits) {
    return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
  }

  function showTip(k) {
    const word = words[k];
    if (!word) return;
    tip.textContent = "";
    const head = document.createElement("h2");
    head.textContent = word.text;
    const records = word.tokens.map((i) => tokens.get(i)).filter(Boolean);
    const surprisal = records.reduce((sum, r) => sum + (r.surprisal || 0), 0);
    const nums = document.createElement("p");
    nums.className = "nums";
    nums.textContent = `${clockText(word.start)}–${clockText(word.end)} · surprisal ${surprisal.toFixed(2)} nats` +
      (records.length > 1 ? ` over ${records.length} tokens` : "");
    tip.append(head, nums);
    for (const r of records) {
      const line = document.createElement("div");
      line.className = "tok";
      const code = document.createElement("code");
      code.textContent = shown(r.text);
      const parts = [`surprisal ${fixed(r.surprisal, 2)}`, `entropy ${fixed(r.entropy, 2)}`];
      if (r.prob !== undefined && r.prob !== null) parts.push(`p ${percent(r.prob)}`);
      if (r.rank !== undefined) parts.push(`rank ${r.rank}`);
      if (r.attention !== undefined && r.attention !== null) parts.push(`attention ${fixed(r.attention, 2)}`);
      line.append(code, " " + parts.join(" · "));
      tip.appendChild(line);
      for (const [text, p] of (r.top || []).slice(0, records.length === 1 ? 5 : records.length === 2 ? 3 : 2)) {
        const alt = document.createElement("div");
        alt.className = "alt" + (text === r.text ? " chosen" : "");
        const label = document.createElement("code");
        label.textContent = shown(text);
        const bar = document.createElement("span");
        bar.className = "bar";
        bar.style.width = `${Math.max(1, Math.round((p || 0) * 100))}%`;
        const pct = document.createElement("span");
        pct.textContent = percent(p);
        const holder = document.createElement("span");
        holder.appendChild(bar);
        alt.append(label, holder, pct);
        tip.appendChild(alt);
      }
    }
    tip.hidden = false;
    tip.style.maxHeight = "";
    const box = wordEls[k].getBoundingClientRect();
    const below = window.innerHeight - dock.offsetHeight - box.bottom - 12;
    const above = box.top - 12;
    const height = tip.offsetHeight;
    let y;
    if (height <= below || below >= above) {
      y = box.bottom + 6;
      if (height > below) tip.style.maxHeight = `${Math.max(below, 80)}px`;
    } else {
      if (height > above) tip.style.maxHeight = `${Math.max(above, 80)}px`;
      y = box.top - tip.offsetHeight - 6;
    }
    const left = Math.min(Math.max(8, box.left), window.innerWidth - tip.offsetWidth - 8);
    tip.style.left = `${left + window.scrollX}px`;
    tip.style.top = `${Math.max(4, y) + window.scrollY}px`;
  }

  function wordOf(target) {
    const el = target && target.closest ? target.closest(".w") : null;
    return el ? Number(el.dataset.i) - wordBase : -1;
  }

  textEl.addEventListener("mouseover", (event) => {
    const k = wordOf(event.target);
    if (k >= 0) showTip(k);
  });
  textEl.addEventListener("mouseout", (event) => {
    if (wordOf(event.relatedTarget) < 0) tip.hidden = true;
  });
  textEl.addEventListener("click", (event) => {
    const k = wordOf(event.target);
    if (k < 0) return;
    showTip(k);
    seek(words[k].start + 1e-3);
  });
  window.addEventListener("scroll", () => { tip.hidden = true; }, { passive: true });

  // ------------------------------------------------------------------ controls

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (target && target.closest && target.closest("input, textarea, select, button")) return;
    if (event.key === " ") toggle();
    else if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
      const step = event.key === "ArrowRight" ? 1 : -1;
      if (event.shiftKey) seek(now() + 5 * step);
      else seekWord(step);
    } else if (event.key === "Home") seek(0);
    else if (event.key === "Escape") tip.hidden = true;
    else return;
    event.preventDefault();
  });

  if (audio && !live) {
    playButton.addEventListener("click", toggle);
    audio.addEventListener("play", () => { playButton.innerHTML = "&#10074;&#10074;"; playButton.setAttribute("aria-label", "Pause"); });
    audio.addEventListener("pause", () => { playButton.innerHTML = "&#9654;"; playButton.setAttribute("aria-label", "Play"); });
    audio.addEventListener("seeked", () => { dirty = true; });
    audio.addEventListener("loadedmetadata", () => {
      if (Number.isFinite(audio.duration)) scrub.max = String(audio.duration);
      document.documentElement.dataset.ready = "true";
    });
    audio.addEventListener("error", () => {
      statusEl.textContent = "this browser cannot play the audio (Ogg Vorbis); try another browser, or render with --page-audio link";
      document.documentElement.dataset.ready = "error";
    });
    scrub.addEventListener("pointerdown", () => { dragging = true; });
    scrub.addEventListener("pointerup", () => { dragging = false; });
    scrub.addEventListener("input", () => seek(Number(scrub.value)));
    scrub.max = String(duration || 1);
  }

  function loadAudio() {
    const payload = $("sonify-audio");
    if (!payload || !audio) return;
    const base64 = payload.textContent.trim();
    const binary = atob(base64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    audio.src = URL.createObjectURL(new Blob([bytes], { type: payload.dataset.type || "audio/ogg" }));
    payload.remove(); // the megabytes of text are not needed once the audio has them
  }

  // ------------------------------------------------------------------ each frame

  function frame() {
    const t = now();
    if (t !== lastDrawn || dirty) {
      setPosition(wordAt(t), t);
      draw(t);
      clockEl.textContent = live ? clockText(t) : `${clockText(t)} / ${clockText(Number(scrub.max) || duration)}`;
      if (!live && !dragging) scrub.value = String(t);
      lastDrawn = t;
      dirty = false;
    }
    requestAnimationFrame(frame);
  }

  window.addEventListener("resize", () => { dirty = true; });

  // ------------------------------------------------------------------ live

  function resetLive() {
    words.length = 0;
    wordEls.length = 0;
    wordBase = 0;
    tokens.clear();
    tokenOrder.length = 0;
    notes.length = 0;
    openNotes.clear();
    layerMax.length = 0;
    textEl.textContent = "";
    stanzaEl = lineEl = null;
    saidUpTo = 0;
    litWord = -1;
  }

  function trimLive() {
    if (words.length <= LIVE_MAX_WORDS) return;
    words.splice(0, LIVE_TRIM);
    const els = wordEls.splice(0, LIVE_TRIM);
    wordBase += LIVE_TRIM;
    saidUpTo = Math.max(0, saidUpTo - LIVE_TRIM);
    litWord = litWord >= LIVE_TRIM ? litWord - LIVE_TRIM : -1;
    for (const el of els) {
      const line = el.parentNode;
      el.remove();
      if (line && !line.querySelector(".w")) {
        const stanza = line.parentNode;
        line.remove();
        if (stanza && !stanza.firstChild && stanza !== stanzaEl) stanza.remove();
      }
    }
    const keepFrom = words.length ? words[0].start : 0;
    let cut = 0;
    while (cut < tokenOrder.length && tokens.get(tokenOrder[cut]).end <= keepFrom) tokens.delete(tokenOrder[cut++]);
    tokenOrder.splice(0, cut);
    let kept = 0;
    for (const n of notes) if (n[1] === null || n[0] + n[1] >= keepFrom - 60) notes[kept++] = n;
    notes.length = kept;
  }

  function onMessage(message) {
    if (message.type === "hello") {
      resetLive();
      ended = false;
      voices = message.voices || [];
      buildLegend();
      $("title").textContent = message.title || "sonify";
      $("subtitle").textContent = message.subtitle || "";
      document.title = message.title || "sonify";
      for (const old of message.history || []) onMessage(old);
      const heard = message.history && message.history.length;
      statusEl.textContent = ended ? "the performance has ended" : heard ? "live" : "live · waiting for the first word";
      document.documentElement.dataset.ready = "true";
    } else if (message.type === "token") {
      liveT = message.t;
      liveAt = performance.now();
      liveRunning = true;
      addToken(message.index, message.token);
      for (const w of message.words) {
        if (w.new) {
          if (w.heading && lineEl && w.breaks >= 1) markHeading(lineEl);
          appendWord({ text: w.text, start: w.start, end: w.end, tokens: [message.index], newlines: 0 }, w.breaks);
        } else if (words.length) {
          const last = words[words.length - 1];
          last.text = w.text;
          last.end = w.end;
          if (!last.tokens.includes(message.index)) last.tokens.push(message.index);
          wordEls[wordEls.length - 1].textContent = w.text;
        }
      }
      statusEl.textContent = "live";
      trimLive();
      dirty = true;
    } else if (message.type === "note") {
      const n = message.note;
      const key = message.key;
      if (message.held) {
        const held = [n[0], null, n[2], n[3], n[4]];
        openNotes.set(key, held);
        notes.push(held);
      } else if (openNotes.has(key)) {
        openNotes.get(key)[1] = n[1];
        openNotes.delete(key);
      } else notes.push(n);
    } else if (message.type === "stop") {
      ended = true;
      if (message.heading && lineEl) markHeading(lineEl);
      liveRunning = false;
      if (typeof message.t === "number") liveT = message.t;
      liveAt = performance.now();
      statusEl.textContent = "the performance has ended";
    } else if (message.type === "start") {
      statusEl.textContent = "live";
    }
  }

  function connect() {
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    socket.addEventListener("message", (event) => onMessage(JSON.parse(event.data)));
    socket.addEventListener("close", () => {
      // A tab left open across pieces reconnects to the next performance on this address.
      if (!ended) statusEl.textContent = "disconnected; retrying";
      setTimeout(connect, 1000);
    });
  }

  // ------------------------------------------------------------------ start

  $("title").textContent = data.title || "sonify";
  $("subtitle").textContent = data.subtitle || "";
  if (live) {
    document.body.classList.add("live");
    buildLegend();
    connect();
  } else {
    (data.tokens || []).forEach((record, index) => addToken(index, record));
    for (const n of data.notes || []) notes.push(n);
    let breaks = 0;
    for (const word of data.words || []) {
      appendWord(word, breaks);
      breaks = word.newlines;
    }
    const lineEls = textEl.querySelectorAll(".line");
    (data.lines || []).forEach((line, k) => {
      if (line.heading && lineEls[k]) markHeading(lineEls[k]);
    });
    buildLegend();
    loadAudio();
    if (audio && audio.src && audio.readyState >= 1) document.documentElement.dataset.ready = "true";
  }
  window.sonifyPage = { now, words: () => words, litWord: () => litWord, wordBase: () => wordBase };
  requestAnimationFrame(frame);
})();
