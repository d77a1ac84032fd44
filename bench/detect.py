"""Detection figures: precision and recall per category for the rules, the semantic model and both, on the sets
we trained on (tuned) and the blind sets (frozen by sha256); false positives per call state on the blind whole-call
set; the model's added latency per final, CPU and memory; and the same through Vosk on shared/audio/tts-cmn.

Prints one JSON line per figure. Usage: python bench/detect.py [--errors] [--skip-asr] [--only TEXT]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

if not __package__:  # run as a file: the project root must come first on the path
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.figures import emit, frozen
from compliance_rules.detector import SemanticDetector
from compliance_rules.engine import CallMonitor, CallState, RuleEngine
from compliance_rules.replies import bundled_replies
from compliance_rules.semantic import SemanticModel
from compliance_rules.training import TRAIN_DIR, Example, language, read_examples
from voicebot.cli.rules import CALIBRATION_SETS
from voicebot.config import load_config

BLIND = Path(__file__).resolve().parent / "data" / "blind"
PACKS = {"zh": "cn-collection", "en": "us-fdcpa-regf"}
SOURCES = ("rules", "model", "both", "both_act")
"""Which flags count: the rules alone, the model alone (alert level), both (the rules' flags the model does not
overrule, and the model's), both taking action."""


def missed(label: str, got: set[str]) -> bool:
    """Whether flags `got` are wrong for a line labelled `label`: any flag on a lawful line, or not its category."""
    return bool(got) if label == "ok" else label not in got


def detect(rows: list[Example], rules: RuleEngine, model: SemanticDetector) -> dict[str, list[set[str]]]:
    """Per source, the categories flagged for each row (signals left out)."""
    states = [CallState.of(r.context) for r in rows]
    rule_flags = [[f for f in rules.check("agent", r.text, s) if f.category != "signal"]
                  for r, s in zip(rows, states, strict=True)]
    by_rule = [{f.category for f in flags} for flags in rule_flags]
    standing = [{f.category for f in model.confirm("agent", r.text, s, flags)} if flags else set()
                for r, s, flags in zip(rows, states, rule_flags, strict=True)]
    model_flags = model.check_many("agent", [r.text for r in rows], states)
    by_model = [{f.category for f in flags} for flags in model_flags]
    acting = [{f.category for f in flags if f.action != "alert"} for flags in model_flags]
    return {"rules": by_rule, "model": by_model, "both": [a | b for a, b in zip(standing, by_model, strict=True)],
            "both_act": [a | b for a, b in zip(standing, acting, strict=True)]}


def score(rows: list[Example], flagged: list[set[str]], name: str, source: str, errors: bool) -> None:
    """Row-level figures: recall per category and overall, precision (flagged rows whose flags name the row's
    category), and the share of lawful rows flagged."""
    hit, total = Counter(), Counter()
    flagged_rows = right_rows = lawful = lawful_flagged = caught_any = 0
    for row, got in zip(rows, flagged, strict=True):
        if got:
            flagged_rows += 1
            right_rows += row.category in got
        if row.category == "ok":
            lawful += 1
            lawful_flagged += bool(got)
        else:
            total[row.category] += 1
            hit[row.category] += row.category in got
            caught_any += bool(got)
        if errors and missed(row.category, got) and source == "both":
            print(f"# {name} want {row.category} got {sorted(got)} [{row.context}] {row.text}", file=sys.stderr)
    for category in sorted(total):
        emit("recall", round(hit[category] / total[category], 3), "ratio", input=name, source=source,
             category=category, rows=total[category])
    violations = sum(total.values())
    emit("recall", round(sum(hit.values()) / max(1, violations), 3), "ratio", input=name, source=source,
         category="all", rows=violations, any_category=round(caught_any / max(1, violations), 3))
    emit("precision", round(right_rows / max(1, flagged_rows), 3), "ratio", input=name, source=source,
         rows=flagged_rows)
    emit("false_positive_rate", round(lawful_flagged / max(1, lawful), 3), "ratio", input=f"{name}: lawful rows",
         source=source, rows=lawful)


def bench_sets(rules: dict[str, RuleEngine], model: dict[str, SemanticDetector], errors: bool, only: str
               ) -> list[str]:
    """Figures on the tuned and blind sets (those whose name holds `only`), per language; returns every blind text
    seen (for the latency figure)."""
    tuned: dict[str, list[Example]] = {"zh": [], "en": []}
    for path in sorted(TRAIN_DIR.glob("*.tsv")):
        for row in read_examples(path):
            tuned[language(row.text)].append(row)
    texts = []
    for lang in ("zh", "en"):
        sets = {f"tuned {lang} (training data)": tuned[lang]}
        for blind in sorted(BLIND.glob(f"blind*_{lang}.tsv")):
            kind = "calibration, studied" if blind in CALIBRATION_SETS else "blind"
            sets[f"{blind.stem} ({kind})"] = read_examples(frozen(blind))
        for name, rows in sets.items():
            if only not in name:
                continue
            results = detect(rows, rules[lang], model[lang])
            for source in SOURCES:
                score(rows, results[source], name, source, errors and "(blind)" in name)
            texts += [r.text for r in rows if "(blind)" in name]
    return texts


def bench_calls(rules: dict[str, RuleEngine], model: dict[str, SemanticDetector], only: str, errors: bool) -> None:
    """False positives per call state and recall on the blind whole-call sets (those whose name holds `only`),
    lines checked as a live call."""
    for path in sorted(p for p in BLIND.glob("calls*.jsonl") if only in p.stem):
        ok, ok_flagged, bad, bad_caught = Counter(), Counter(), Counter(), Counter()
        for line in frozen(path).read_text(encoding="utf-8").splitlines():
            call = json.loads(line)
            lang = call["language"]
            first = next(t for t in call["lines"] if t["leg"] == "agent")["state"]
            # a call that reaches the server verified (a callback, a transfer) says so: `verified` / X-Identity-Verified
            monitor = CallMonitor(rules[lang], CallState(verified=first == "verified"), model=model[lang])
            for turn in call["lines"]:
                flags = monitor.check_all(turn["leg"], turn["text"])
                if turn["leg"] != "agent":
                    continue
                got = {f.category for f in flags if f.category != "signal"}
                key = turn["state"]
                if errors and missed(turn["label"], got):
                    print(f"# {path.stem} {call['id']} want {turn['label']} got {sorted(got)} [{key}] {turn['text']}",
                          file=sys.stderr)
                if turn["label"] == "ok":
                    ok[key] += 1
                    ok_flagged[key] += bool(got)
                else:
                    bad[key] += 1
                    bad_caught[key] += turn["label"] in got
        for state in sorted(ok):
            emit("false_positive_rate", round(ok_flagged[state] / ok[state], 3), "ratio", input=f"{path.stem} (blind)",
                 state=state, rows=ok[state])
        emit("recall", round(sum(bad_caught.values()) / max(1, sum(bad.values())), 3), "ratio",
             input=f"{path.stem} (blind)", rows=sum(bad.values()))


def bench_cost(model: SemanticDetector, texts: list[str], name: str) -> None:
    """Added latency per final (p50/p99) and CPU per final, reading each text once as the live stage does."""
    for text in texts[:20]:
        model.check("agent", text)
    latencies, cpu_started = [], time.process_time()
    for text in texts:
        model.model.encoder.forget()  # as a new final: its vector was not kept
        started = time.perf_counter()
        model.check("agent", text, CallState())
        latencies.append((time.perf_counter() - started) * 1000)
    cpu_ms = (time.process_time() - cpu_started) * 1000 / len(texts)
    latencies.sort()
    emit("model_latency_p50", round(statistics.median(latencies), 1), "ms", input=name, rows=len(texts))
    emit("model_latency_p99", round(latencies[int(len(latencies) * 0.99)], 1), "ms", input=name, rows=len(texts))
    emit("model_cpu_per_final", round(cpu_ms, 1), "ms", input=name)
    emit("model_cpu_share_per_call", round(cpu_ms / 1000 / 4.0, 4), "cores", input=name,
         assumption="one agent final every 4 s of call")


def bench_asr(rules: RuleEngine, model: SemanticDetector, shared: Path) -> None:
    """Detection on Vosk transcripts of the tts-cmn agent and bot lines (labelled lawful or violation)."""
    from asr.codecs import read_audio_file
    from asr.transcribe import transcribe_audio
    from asr.vosk_engine import VoskEngine

    folder = shared / "audio" / "tts-cmn"
    asr = VoskEngine.load(load_config().vosk_model)
    caught = violations = lawful_flagged = lawful = 0
    finals = []
    for line in (folder / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        file, role, label = line.split("\t")[:3]
        text = "".join(leg.text for leg in transcribe_audio(asr, read_audio_file(folder / file)))
        finals.append(text)
        if role == "customer":
            continue
        flags = [f for f in CallMonitor(rules, CallState(), model=model).check_all("agent", text)
                 if f.category != "signal"]  # as the live stages read it: rules, the model's veto, the model
        if label == "violation":
            violations += 1
            caught += bool(flags)
        else:
            lawful += 1
            lawful_flagged += bool(flags)
    emit("recall", round(caught / max(1, violations), 3), "ratio", input="tts-cmn agent lines through Vosk",
         source="both", rows=violations, any_category=True)
    emit("false_positive_rate", round(lawful_flagged / max(1, lawful), 3), "ratio",
         input="tts-cmn agent and bot lawful lines through Vosk", source="both", rows=lawful)
    bench_cost(model, finals * 4, "Vosk finals of tts-cmn (every line, 4 times)")


def main() -> None:
    """Every detection figure."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--errors", action="store_true", help="list the blind sets' misses and false alarms")
    parser.add_argument("--skip-asr", action="store_true", help="leave out the tts-cmn figures (needs Vosk)")
    parser.add_argument("--only", default="", metavar="TEXT", help="only the sets whose name holds TEXT")
    args = parser.parse_args()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    semantic = SemanticModel.load()
    emit("model_load_rss", round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024), "MiB",
         model=semantic.version)
    rules = {lang: RuleEngine.from_pack(pack) for lang, pack in PACKS.items()}
    model = {lang: SemanticDetector(semantic, rules[lang].pack, bundled_replies()) for lang in PACKS}
    texts = bench_sets(rules, model, args.errors, args.only)
    bench_calls(rules, model, args.only, args.errors)
    if texts:
        bench_cost(model["zh"], texts, "blind sets' written turns (longer than live finals)")
    if not args.skip_asr:
        bench_asr(rules["zh"], model["zh"], load_config().shared_dir)
    emit("peak_rss", round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "MiB",
         note="this process: rules of two packs, the encoder and the head (and Vosk unless --skip-asr)")


if __name__ == "__main__":
    main()
