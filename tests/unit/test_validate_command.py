import io
import json

from emulator.harness.validate import EXIT_INVALID, EXIT_USAGE, EXIT_VALID, run

VALID = {"type": "identify", "userId": "u1", "traits": {"email": "ada@example.com"}}
INVALID = {"type": "identify", "traits": {"age": "old"}}


def run_with(contract, files, stdin_text=""):
    out, err = io.StringIO(), io.StringIO()
    code = run(contract, files, io.StringIO(stdin_text), out, err)
    return code, out.getvalue(), err.getvalue()


def test_valid_file_exits_zero(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(VALID))
    code, out, _ = run_with("segment.identify", [str(path)])
    assert code == EXIT_VALID
    assert out == f"{path}: valid\n"


def test_invalid_payload_names_path_and_rule(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(INVALID))
    code, out, _ = run_with("segment.identify", [str(path)])
    assert code == EXIT_INVALID
    assert f"{path}: invalid against segment.identify" in out
    assert "$.traits.age:" in out and "(type)" in out


def test_stdin_json_lines_are_checked_one_by_one():
    lines = "\n".join([json.dumps(VALID), "", json.dumps(INVALID), "{not json"])
    code, out, _ = run_with("segment.identify", ["-"], lines)
    assert code == EXIT_INVALID
    assert "<stdin>:1: valid" in out
    assert "<stdin>:3: invalid against segment.identify" in out
    assert "<stdin>:4: invalid against segment.identify" in out and "not valid JSON" in out


def test_json_lines_end_at_newlines_only_not_at_separators_json_strings_may_hold_raw(tmp_path):
    # str.splitlines() also split at U+2028, U+2029 and U+0085, which JSON allows raw in a string:
    # two valid lines were four invalid ones, at line numbers the file does not have (R49).
    path = tmp_path / "events.jsonl"
    lines = [{**VALID, "traits": {"email": "ada@example.com", "note": f"a{separator}b"}} for separator in "\u2028\u2029\x85"]
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\r\n" for line in lines), encoding="utf-8")
    code, out, _ = run_with("segment.identify", [str(path)])
    assert code == EXIT_VALID, out
    assert out == "".join(f"{path}:{number}: valid\n" for number in (1, 2, 3))


def test_unknown_contract_is_a_usage_error():
    code, out, err = run_with("segment.nope", ["-"], json.dumps(VALID))
    assert code == EXIT_USAGE and out == ""
    assert "unknown contract 'segment.nope'" in err and "segment.identify" in err


def test_shared_definitions_are_not_a_contract_to_validate_against():
    # The root of mailjet.common holds only $defs: it would call any payload valid.
    code, out, err = run_with("mailjet.common", ["-"], '"garbage"')
    assert code == EXIT_USAGE and out == ""
    assert "'mailjet.common' holds definitions the contracts share, not a contract" in err
    assert "mailjet.managecontact.request" in err and "mailjet.common," not in err


def test_missing_file_is_a_usage_error(tmp_path):
    code, _, err = run_with("segment.identify", [str(tmp_path / "missing.json")])
    assert code == EXIT_USAGE and "cannot read" in err


def test_empty_input_is_invalid():
    code, out, _ = run_with("segment.identify", ["-"], "\n\n")
    assert code == EXIT_INVALID and "empty input" in out


def test_what_the_fakes_refuse_as_json_is_not_valid_json_here_either(tmp_path):
    # Python's json reads NaN, Infinity and 1e999 (inf); no JSON encoder, nor the fake Segment, does.
    lines = [
        '{"userId": "u1", "traits": {"score": NaN}}',
        '{"userId": "u1", "traits": {"score": -Infinity}}',
        '{"userId": "u1", "traits": {"score": 1e999}}',
    ]
    code, out, _ = run_with("segment.identify", ["-"], "\n".join(lines))
    assert code == EXIT_INVALID
    assert out.count("invalid against segment.identify\n  not valid JSON: ") == 3
    assert "NaN is not valid JSON" in out and "Infinity is not valid JSON" in out and "1e999 is out of range" in out


def test_json_nested_too_deep_is_reported_not_a_crash(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    code, out, _ = run_with("segment.identify", [str(path)])
    assert code == EXIT_INVALID
    assert f"{path}:1: invalid against segment.identify" in out and "nested more than" in out


def test_stdin_is_read_as_utf8_whatever_the_locale_says():
    # JSON is UTF-8 (RFC 8259 §8.1). Read through the locale's codec, an ASCII or strict UTF-8
    # standard input crashed on bytes it could not decode (a traceback, not exit 2).
    payload = json.dumps({"type": "identify", "userId": "Zoë"}, ensure_ascii=False).encode("utf-8")
    out, err = io.StringIO(), io.StringIO()
    stdin = io.TextIOWrapper(io.BytesIO(payload), encoding="ascii", errors="strict")
    assert run("segment.identify", ["-"], stdin, out, err) == EXIT_VALID
    assert out.getvalue() == "<stdin>: valid\n"
    stdin = io.TextIOWrapper(io.BytesIO(b'\xff{"type": "identify"}'), encoding="utf-8", errors="strict")
    assert run("segment.identify", ["-"], stdin, out, err) == EXIT_USAGE
    assert "segjet validate: cannot read <stdin>: 'utf-8' codec can't decode byte 0xff" in err.getvalue()


def test_every_file_is_checked_and_a_pretty_printed_document_is_one_payload(tmp_path):
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(VALID, indent=2))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(INVALID))
    code, out, _ = run_with("segment.identify", [str(pretty), str(bad), "-"], json.dumps(VALID))
    assert code == EXIT_INVALID
    assert out.splitlines()[0] == f"{pretty}: valid"
    assert f"{bad}: invalid against segment.identify" in out
    assert out.endswith("<stdin>: valid\n")
    code, out, _ = run_with("segment.identify", [str(pretty), "-"], json.dumps(VALID))
    assert (code, out) == (EXIT_VALID, f"{pretty}: valid\n<stdin>: valid\n")
