"""`rankopt report` pages opened in a real browser (headless Chromium, driven by Playwright): they load
with no console error and no request beyond the file itself, every image decodes, the numbers shown
are those of metrics.json (or the comparison's JSON), and the retrieval gallery draws its coloured
borders (a screenshot test)."""

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from rankopt.cli import main

sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
sys.path.insert(0, str(Path(__file__).parents[1] / "recsys"))
from miniatures import write_fashion

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium; CI installs it)"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished image runs on the same test queries (different losses and seeds)."""
    root = tmp_path_factory.mktemp("report")
    (root / "fashion").mkdir()
    data = write_fashion(root / "fashion", 480, 120)
    out = []
    for name, loss, seed in (("a", "roadmap", 0), ("b", "smoothap", 1)):
        run = root / name
        assert (
            main(
                [
                    "train",
                    "--data-dir",
                    str(data),
                    "--run-dir",
                    str(run),
                    "--set",
                    "train.epochs=2",
                    "--set",
                    f"loss.name={loss}",
                    "--set",
                    f"train.seed={seed}",
                    "--set",
                    "data.batch_size=40",
                    "--set",
                    "data.m=4",
                    "--json",
                ]
            )
            == 0
        )
        out.append(run)
    return out


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; CI installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_page(browser, path: Path):
    """The page, with what it logged and requested."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    seen = {"console": [], "requests": [], "errors": []}
    page.on("console", lambda m: seen["console"].append((m.type, m.text)))
    page.on("pageerror", lambda e: seen["errors"].append(str(e)))
    page.on("request", lambda r: seen["requests"].append(r.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_load_state("load")
    return page, seen


def assert_clean(page, seen, path: Path):
    assert seen["errors"] == [] and [c for c in seen["console"] if c[0] in ("error", "warning")] == []
    # data: URIs (inlined images) are no request to anything; the file itself is the only one
    assert [u for u in seen["requests"] if not u.startswith("data:")] == [path.resolve().as_uri()]
    broken = page.evaluate("Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0


SHOWN_METRICS = (
    "Object.fromEntries(Array.from(document.querySelectorAll('#metrics tbody tr')).map("
    "r => [r.dataset.metric, r.querySelector('.value').textContent]))"
)


def report_in_browser(run: Path, page_file: Path) -> tuple[dict[str, str], str, int]:
    """``rankopt report RUN`` opened in Chromium, checked clean: (the metrics table as shown, the page's
    HTML, its number of figures). For a task's own test of its report section."""
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; CI installs it)")
    from playwright.sync_api import sync_playwright

    assert main(["report", str(run), "-o", str(page_file)]) == 0
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page, seen = open_page(b, page_file)
            assert_clean(page, seen, page_file)
            return page.evaluate(SHOWN_METRICS), page.content(), page.locator("figure svg").count()
        finally:
            b.close()


@needs_browser
def test_report_of_a_run_in_the_browser(runs, browser, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(runs[0]), "-o", str(out)]) == 0
    page, seen = open_page(browser, out)
    assert_clean(page, seen, out)
    recorded = json.loads((runs[0] / "metrics.json").read_text())["test"]
    shown = page.evaluate(SHOWN_METRICS)
    assert set(shown) == {k for k in recorded if not k.startswith("n_")}
    for name, text in shown.items():
        assert text == f"{recorded[name]:.4f}", name
    assert page.locator("figure svg").count() >= 4  # AP histogram, PR, hit@k, per-level AP, training
    assert page.locator("#gallery img").count() == 12 * 9  # 6 sampled + 6 worst queries, each with 8 results
    # the screenshot of the gallery: coloured borders drawn (green: same class, red: unrelated)
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(page.locator("#gallery").screenshot())).convert("RGB")).astype(int)
    green = ((shot[..., 1] > 130) & (shot[..., 0] < 80) & (shot[..., 2] < 100)).sum()
    red = ((shot[..., 0] > 180) & (shot[..., 1] < 80) & (shot[..., 2] < 80)).sum()
    assert green > 500 and red > 500 and shot.std() > 30
    page.close()


@needs_browser
def test_comparison_in_the_browser_equals_its_json(runs, browser, tmp_path, capsys):
    out = tmp_path / "compare.html"
    assert main(["report", str(runs[0]), str(runs[1]), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    page, seen = open_page(browser, out)
    assert_clean(page, seen, out)
    for run in summary["runs"]:
        recorded = json.loads((Path(run["path"]) / "metrics.json").read_text())["test"]
        for name, value in run["metrics"].items():
            assert value == pytest.approx(recorded[name], abs=1e-9), name  # the per-query means are the run's
            cell = page.locator(f"#metrics tr[data-metric='{name}'] td[data-run='{run['label']}']")
            assert cell.text_content() == f"{value:.4f}"
    rows = page.locator("#pairs tbody tr")
    assert rows.count() == len(summary["pairs"])
    for i, pair in enumerate(summary["pairs"]):
        row = rows.nth(i)
        assert row.locator(".diff").text_content() == f"{pair['diff']:+.4f}"
        assert row.locator(".p").text_content() == f"{pair['p']:.4f}"
        assert pair["low"] <= pair["diff"] <= pair["high"] and 0 < pair["p"] <= 1
    page.close()


def test_comparison_refuses_runs_on_other_queries(runs, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    lines = (other / "test_per_query.csv").read_text().splitlines()
    (other / "test_per_query.csv").write_text("\n".join(lines[:-1]) + "\n")
    assert main(["report", str(runs[0]), str(other), "-o", str(tmp_path / "c.html")]) == 2
    assert "same test queries" in capsys.readouterr().err


@needs_browser
def test_report_of_embeddings_and_of_a_recommendation_run(browser, tmp_path):
    from test_runner import synthetic

    rng = np.random.default_rng(0)
    labels = np.stack([np.arange(200) % 10, np.arange(200) % 10 // 5], 1)
    emb = rng.normal(size=(10, 16))[labels[:, 0]] + rng.normal(size=(200, 16))
    np.savez(tmp_path / "e.npz", embeddings=emb.astype(np.float32), labels=labels)
    out = tmp_path / "e.html"
    assert main(["report", str(tmp_path / "e.npz"), "-o", str(out)]) == 0
    page, seen = open_page(browser, out)
    assert_clean(page, seen, out)
    assert page.locator("#gallery .nolabel").count() == 12 * 9  # no images: the labels are shown
    page.close()

    data = synthetic(tmp_path / "data") if (tmp_path / "data").mkdir() is None else None
    run = tmp_path / "rec"
    assert (
        main(["recsys", "train", str(data), "--epochs", "2", "--dim", "8", "--k", "5,10", "--run-dir", str(run)]) == 0
    )
    out = tmp_path / "rec.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    page, seen = open_page(browser, out)
    assert_clean(page, seen, out)
    recorded = json.loads((run / "metrics.json").read_text())["test"]
    assert page.locator("#metrics tr[data-metric='ndcg@10'] .value").text_content() == f"{recorded['ndcg@10']:.4f}"
    captions = page.locator("figcaption").all_text_contents()
    assert any("by user activity" in c for c in captions) and any("every cut-off" in c for c in captions)
    page.close()


def test_a_run_whose_images_are_gone_still_reports_its_numbers(runs, tmp_path):
    import yaml

    moved = tmp_path / "moved"
    shutil.copytree(runs[0], moved)
    cfg = yaml.safe_load((moved / "config.yaml").read_text())
    cfg["data"]["root"] = str(tmp_path / "no-such-folder")
    (moved / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "r.html"
    assert main(["report", str(moved), "-o", str(out)]) == 0
    html = out.read_text()
    assert "No curves or gallery: the run" in html and "cannot be read" in html and 'id="gallery"' not in html
    recorded = json.loads((moved / "metrics.json").read_text())["test"]
    assert f">{recorded['map@r']:.4f}<" in html


@needs_browser
def test_report_shows_the_ood_results_of_a_run(runs, browser, tmp_path):
    fast = [
        f"--option={d}.{k}={v}"
        for d in ("heat_gmm", "heat_gmm_std", "heat_el")
        for k, v in (("epochs", 1), ("hidden", 16))
    ]
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    assert main(["ood", str(run), "--ood", "noise,digits", "--detectors", "energy,knn,heat", *fast]) == 0
    recorded = json.loads((run / "ood.json").read_text())["detectors"]
    out = tmp_path / "report.html"
    assert main(["report", str(run), "-o", str(out)]) == 0
    page, seen = open_page(browser, out)
    assert_clean(page, seen, out)
    table = page.locator("table.ood[data-file='ood.json']")
    assert table.locator("tbody tr").count() == 3
    for name, r in recorded.items():
        row = table.locator(f"tr[data-detector='{name}']")
        assert row.locator(".auroc").text_content() == f"{r['mean']['auroc']:.4f}"
        assert row.locator(".fpr95_id").text_content() == f"{r['mean']['fpr95_id']:.4f}"
        assert row.locator("td[data-set='digits']").text_content() == f"{r['per_ood']['digits']['auroc']:.4f}"
    assert page.get_by_text("heat scores").count() == 1  # the score distributions of the best detector and HEAT
    page.close()
