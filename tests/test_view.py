"""The live terminal view: the text as it sounds, coloured by surprisal."""

from sonify.live.view import TerminalView, surprisal_style
from sonify.music.score import Cue


def test_colour_runs_from_green_for_expected_to_red_for_surprising():
    def rgb(style: str) -> tuple[int, ...]:
        return tuple(int(x) for x in style[4:-1].split(","))

    calm, middle, shock = rgb(surprisal_style(0.0)), rgb(surprisal_style(4.0)), rgb(surprisal_style(20.0))
    assert calm[1] > calm[0] and shock[0] > shock[1]
    assert calm[0] <= middle[0] <= shock[0] and calm[1] >= middle[1] >= shock[1]


def test_view_shows_each_token_with_its_colour_and_the_status():
    view = TerminalView("test")
    view.live.console.file = open("/dev/null", "w")  # noqa: SIM115 - the view writes somewhere harmless
    view.start()
    view.show(Cue(0.0, 0.3, 0.0, 0, "Shall", 0.5, 3.2), attention=0.61)
    view.show(Cue(0.3, 0.3, 0.5, 1, " I", 7.5, 1.1), attention=0.42)
    view.stop()
    assert view.text.plain == "Shall I"
    styles = [str(span.style) for span in view.text.spans]
    assert styles == [surprisal_style(0.5), surprisal_style(7.5)]
    assert "entropy 1.10" in view.status and "attention spread 0.42" in view.status
