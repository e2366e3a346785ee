"""The EMER judge: robust score parsing, the two scores with mock backends, the API backend
against a fake local server, rank correlation, and the tiny local LM's digit distribution."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from esva.errors import EsvaError
from esva.evaluate import emer_judge as judge
from esva.evaluate.emer_judge import (
    JUDGE_NOTE,
    PUBLISHED_EMER,
    RETIRED_JUDGE,
    APIJudge,
    EmerJudge,
    LocalJudge,
    parse_score,
    rank_correlation,
)


@pytest.mark.parametrize(
    ("reply", "score"),
    [
        ("Score: 7; Reason: both say he is angry.", 7.0),
        ("'预测分数'：8；'原因'：两者都提到了生气。", 8.0),
        ("分数：６；理由：部分重合", 6.0),  # full-width digit
        ("1. The reference says angry. 2. The prediction says sad. 3. Score: 2", 2.0),
        ("I would rate it 6/10 because ...", 6.0),
        ("The prediction scores 3 out of 10.", 3.0),
        ("Score: 7.5", 7.5),
        ("9", 9.0),  # AffectGPT's rule: the first number
        ("Score: 15", None),  # out of range
        ("They overlap a lot.", None),
        ("", None),
    ],
)
def test_parse_score(reply: str, score: float | None) -> None:
    assert parse_score(reply) == score


class Scripted:
    """A mock backend: answers by looking for a key phrase in the prompt; records prompts."""

    name = "mock"

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies
        self.prompts: list[str] = []

    def complete(self, prompt: str, max_new_tokens: int) -> str:
        self.prompts.append(prompt)
        for key, reply in self.replies.items():
            if key in prompt.split("\n")[-1] or key in prompt[-200:]:
                return reply
        return "no idea"


def test_clue_and_label_scores_with_a_mock_backend() -> None:
    backend = Scripted(
        {
            "Emotions:": "angry",  # every summary (the first key found wins)
            "Prediction: He shouts": "Score: 9; Reason: same clues",
            "Prediction: He smiles": "Score: 2; Reason: different",
            "Predicted emotions: angry": "Score: 10",
        }
    )
    j = EmerJudge(backend, mode="expected")  # the mock has no digit distribution: generates
    refs = {"a": "He yells loudly. He is angry.", "b": "He yells. Angry.", "c": "Calm."}
    preds = {"a": "He shouts at her.", "b": "He smiles.", "d": "ignored"}
    cache: dict = {}
    out = j.score(refs, preds, cache=cache)
    assert out["n"] == 2 and out["clue"] == pytest.approx(5.5) and out["label"] == 10.0
    assert out["clue_unparsed"] == 0 and out["note"] == JUDGE_NOTE
    assert RETIRED_JUDGE in JUDGE_NOTE and "not comparable" in JUDGE_NOTE
    assert "Reference: He yells loudly" in backend.prompts[0]
    n_calls = len(backend.prompts)
    assert j.score(refs, preds, cache=cache) == out and len(backend.prompts) == n_calls  # cached
    # Unparseable replies are counted, not scored as 0.
    silent = EmerJudge(Scripted({}), mode="generate").score(refs, preds, which=("clue",))
    assert math.isnan(silent["clue"]) and silent["clue_unparsed"] == 2
    with pytest.raises(EsvaError, match="no sample"):
        j.score(refs, {"x": "y"})


def test_chinese_references_get_the_chinese_rubric() -> None:
    backend = Scripted({"预测情感：": "分数：8", "预测描述": "预测分数：7", "情感：": "生气"})
    j = EmerJudge(backend, mode="generate")
    assert j.clue_score("他怒吼，因此推测他生气。", "他很大声。")[0] == 7.0
    assert "参考描述：他怒吼" in backend.prompts[-1]
    value, detail = j.label_score("他怒吼，因此推测他生气。", "他很大声。")
    assert value == 8.0 and detail.startswith("生气 | 生气")
    assert EmerJudge(backend, language="en")._lang("他怒吼") == "en"
    with pytest.raises(EsvaError, match="judge mode"):
        EmerJudge(backend, mode="vote")


class _Handler(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict]] = []
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.requests.append({"path": self.path, "auth": self.headers["Authorization"], **body})
        if _Handler.status != 200:
            self.send_response(_Handler.status)
            self.end_headers()
            return
        reply = {"choices": [{"message": {"role": "assistant", "content": "Score: 6; ok"}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def fake_server():
    server = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.requests.clear()
    _Handler.status = 200
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()
    server.server_close()


def test_api_backend_against_a_fake_server(fake_server: str) -> None:
    backend = APIJudge(fake_server, api_key="sk-test", model="judge-model", retries=0)
    value, reply = EmerJudge(backend).clue_score("He is angry.", "He shouts.")
    assert value == 6.0 and reply == "Score: 6; ok"
    sent = _Handler.requests[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
    assert sent["model"] == "judge-model" and sent["temperature"] == 0
    assert "Prediction: He shouts." in sent["messages"][0]["content"]

    _Handler.status = 401
    with pytest.raises(EsvaError, match="HTTP 401") as err:
        backend.complete("hi", 4)
    assert "\n" not in str(err.value)
    with pytest.raises(EsvaError, match="cannot reach"):
        APIJudge("http://127.0.0.1:9/v1", retries=0, timeout_s=2).complete("hi", 4)
    with pytest.raises(EsvaError, match="must start with http"):
        APIJudge("localhost:8000")


def test_rank_correlation() -> None:
    clue = {name: c for name, (c, _) in PUBLISHED_EMER.items()}
    same = rank_correlation({k: v + 1 for k, v in clue.items()}, clue)
    assert same["spearman"] == pytest.approx(1.0) and same["kendall"] == pytest.approx(1.0)
    flipped = rank_correlation({k: -v for k, v in clue.items()}, clue)
    assert flipped["spearman"] == pytest.approx(-1.0) and flipped["n"] == 6
    with pytest.raises(EsvaError, match="at least 3"):
        rank_correlation({"pandagpt": 1.0}, clue)


def test_local_judge_digit_distribution() -> None:
    """The tiny byte-level LM writes digits as single tokens: a proper distribution."""
    local = LocalJudge("tiny-random-llama")
    value, mass = local.expected_score("Rate this: 'happy' vs 'glad'.", "Score: ")
    assert value is not None and 0.0 <= value <= 10.0 and 0.0 < mass <= 1.0
    assert isinstance(local.complete("Hello", 4), str)
    scored = EmerJudge(local).clue_score("He is happy.", "He is glad.")
    assert 0.0 <= scored[0] <= 10.0 and "digit mass" in scored[1]


def test_reading_emer_csv(tmp_path: Path) -> None:
    path = tmp_path / "gt.csv"
    path.write_text("names,chi_reasons\nsample_1,他很生气。\nsample_2,\n", encoding="utf-8")
    assert judge.read_reasons(path) == {"sample_1": "他很生气。", "sample_2": ""}
    (tmp_path / "bad.csv").write_text("name,text\na,b\n")
    with pytest.raises(EsvaError, match="expected columns names"):
        judge.read_reasons(tmp_path / "bad.csv")
    with pytest.raises(EsvaError, match="file not found"):
        judge.read_reasons(tmp_path / "none.csv")


def test_score_emer_command_against_a_fake_server(fake_server: str, tmp_path: Path, capsys) -> None:
    from esva.cli.main import main

    gt, pred = tmp_path / "gt.csv", tmp_path / "system.csv"
    gt.write_text("names,chi_reasons\ns1,He yells. He is angry.\ns2,She smiles. Happy.\n")
    pred.write_text("names,chi_reasons\ns1,He shouts.\ns2,She grins.\n")
    args = ["score", "emer", str(pred), "--gt", str(gt), "--api-url", fake_server]
    assert main([*args, "--mode", "generate"]) == 0
    out = capsys.readouterr().out
    scores = json.loads(out[: out.rindex("}") + 1])
    assert scores["system"]["n"] == 2 and scores["system"]["clue"] == 6.0  # the server's "6"
    assert RETIRED_JUDGE in out
    assert main([*args, "--mode", "vote"]) == 2
    assert main(["score", "emer", str(pred), "--gt", str(tmp_path / "none.csv")]) == 2
    assert "file not found" in capsys.readouterr().err
