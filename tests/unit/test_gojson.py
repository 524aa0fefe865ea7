"""agent/gojson.py: malformed JSON reported in Go's encoding/json words."""
from __future__ import annotations

import pytest

from agent.gojson import GoJSONError, loads


@pytest.mark.parametrize("raw,msg", [
    (b"", "EOF"),
    (b"  ", "EOF"),
    (b"x", "invalid character 'x' looking for beginning of value"),
    (b"foo", "invalid character 'o' in literal false (expecting 'a')"),
    (b"nulx", "invalid character 'x' in literal null (expecting 'l')"),
    (b'{"a": tx}', "invalid character 'x' in literal true (expecting 'r')"),
    (b"tru", "unexpected EOF"),
    (b"-x", "invalid character 'x' in numeric literal"),
    (b"{", "unexpected EOF"),
    (b"{} x", "invalid character 'x' after top-level value"),
    (b"01", "invalid character '1' after top-level value"),
    (b"NaN", "invalid character 'N' looking for beginning of value"),
])
def test_go_messages(raw, msg):
    with pytest.raises(GoJSONError) as e:
        loads(raw)
    assert str(e.value) == msg


def test_valid_values_decode():
    assert loads(b'{"a": [1, true, null, "s"]}') == {"a": [1, True, None, "s"]}
