from hypothesis import given
from hypothesis import strategies as st

from kvyard.frontend.stops import StopMatcher


def run(chunks, stops):
    m = StopMatcher(stops)
    out, hit = [], False
    for c in chunks:
        text, hit = m.feed(c)
        out.append(text)
        if hit:
            break
    if not hit:
        out.append(m.flush())
    return "".join(out), hit


def test_stop_across_chunks_and_release_early():
    m = StopMatcher(["END"])
    assert m.feed("abc E") == ("abc ", False)  # only a possible stop prefix is held back
    assert m.feed("N") == ("", False)
    assert m.feed("Dxyz") == ("", True)


def test_no_stops_passes_through():
    assert run(["a", "b"], []) == ("ab", False)


@given(st.text(alphabet="abE ND", max_size=40), st.lists(st.integers(1, 5), max_size=20))
def test_any_chunking_gives_text_before_first_stop(text, cuts):
    chunks, i = [], 0
    for c in cuts:
        chunks.append(text[i : i + c])
        i += c
    chunks.append(text[i:])
    stops = ["END", "DD"]
    first = min((text.find(s) for s in stops if s in text), default=-1)
    expected = (text[:first], True) if first >= 0 else (text, False)
    assert run(chunks, stops) == expected
