"""python -m tinynet.explain: the page's numbers are tinynet's, and the page works in a real browser.

The engine-side tests compare the page's data with one ordinary forward and backward of the same
net (one graph, not the page's layer-by-layer walk). The tests marked `browser` open the page from
file:// in Debian's headless Chromium, click units and read the numbers back from the page."""
import json
import math
import os
import re
import tempfile
import time

import numpy as np
import pytest

import tinynet as tn
import tinynet.functional as F
from tinynet import explain, models, nn

NAMES = [f"class {i}" for i in range(10)]


def small_net(width=8, seed=0):
    tn.manual_seed(seed)
    return models.alexnet_small(num_classes=10, width=width, dropout=0.25)


def sample_image(side=28, seed=3):
    rng = np.random.default_rng(seed)
    img = np.zeros((side, side), np.uint8)
    img[4:side - 4, 6:side - 6] = rng.integers(60, 255, size=(side - 8, side - 12))   # a bright block on black
    return img


def page_data(model, side=28, channels=1, target=None, model_name="alexnet-small", log=(), log_path=None):
    return explain.build_page_data(model_name, model, side, channels, 10, "untrained: test net", sample_image(),
                                   1, NAMES, target, mean=(0.3,), std=(0.35,), log=log, log_path=log_path)


def reference(model, x, target):
    """One ordinary forward and backward of the whole net: each layer's output, the probabilities
    (the engine's backward of the loss gives softmax - onehot), the input's and conv1's weight gradient."""
    net, _ = explain.one_device_net(model)
    net.eval()
    for p in net.parameters():
        p.grad = None
    xt = tn.tensor(x[None], requires_grad=True)
    outs, cur = {}, xt
    for name, layer in explain.leaves(net):
        cur = layer(cur)
        outs[name] = cur.data[0].copy()
    logits = cur.data[0].copy()
    F.softmax_cross_entropy(cur, np.array([target])).backward()
    return outs, logits, xt.grad[0], np.asarray(net.conv1.weight.grad)


def inflate(s, dtype="<f4"):
    import base64
    import zlib
    return np.frombuffer(zlib.decompress(base64.b64decode(s)), dtype=dtype)


def test_page_data_holds_the_values_of_one_ordinary_forward_and_backward():
    model = small_net()
    data = page_data(model)
    x = inflate(data["input"]["values"]).reshape(data["input"]["shape"])
    outs, logits, dx, conv1_grad = reference(model, x, data["target"])
    for rec in data["layers"]:
        np.testing.assert_array_equal(inflate(rec["values"]).reshape(rec["shape"]), outs[rec["name"]], err_msg=rec["name"])
    np.testing.assert_allclose(inflate(data["input"]["grad"]).reshape(dx.shape), dx, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(inflate(data["conv1"]["grad"]).reshape(data["conv1"]["shape"]), conv1_grad,
                               rtol=1e-5, atol=1e-7)
    assert all(p.requires_grad for p in model.parameters())        # the page left the net as it found it
    assert data["pred"] == int(np.argmax(logits))
    z = logits.astype(np.float64)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    np.testing.assert_allclose(inflate(data["probs"]), p, atol=1e-6)
    assert [r["index"] for r in data["top5"]] == list(np.argsort(-p)[:5])


def test_the_chosen_class_steers_the_backward():
    model = small_net()
    a, b = page_data(model, target=2), page_data(model, target=7)
    assert (a["target"], b["target"]) == (2, 7)
    assert not np.allclose(inflate(a["input"]["grad"]), inflate(b["input"]["grad"]))


def test_receptive_fields_of_the_paper_net_grow_as_the_arithmetic_says():
    net = models.alexnet(num_classes=10)
    rfs = {name: rf for (name, _), rf in zip(explain.leaves(net), explain.receptive_fields(explain.leaves(net), 224))}
    sizes = {name: rfs[name]["r"] for name in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")}
    assert sizes == dict(conv1=11, pool1=19, conv2=51, pool2=67, conv3=99, conv4=131, conv5=163, pool5=195)
    assert rfs["conv1"]["start"] == -2 and rfs["conv2"]["j"] == 8 and rfs["fc6"] is None
    assert rfs["conv2"]["text"] == "r = 19 + (5 - 1) * 8 = 51;  jump = 8 * 1 = 8"


def test_grouped_layers_are_two_towers_and_crossings_are_counted():
    data = page_data(small_net(width=8))
    by = {r["name"]: r for r in data["layers"]}
    assert data["towers"] == 2 and by["conv2"]["towers"] == 2 and by["conv2"]["groups"] == 2
    # conv3 reads both towers' pool2 maps: 16 channels of 6 x 6, half of them cross each way, 4 bytes each
    assert by["conv3"]["crossing_bytes"] == 16 * 6 * 6 // 2 * 4
    assert "conv2" not in [r["name"] for r in data["layers"] if "crossing_bytes" in r]
    assert by["conv1"]["arithmetic"] == "(28 - 5 + 2*2) // 1 + 1 = 28"


def test_fc_contributions_sum_to_the_engines_value():
    data = page_data(small_net())
    fc = next(r for r in data["layers"] if r["name"] == "fc7")
    k = fc["top_k"]
    import base64
    top = inflate(fc["top_value"]).reshape(-1, k).astype(np.float64)
    total = top.sum(1) + inflate(fc["rest"], "<f4") + inflate(fc["bias"])
    np.testing.assert_allclose(total, inflate(fc["values"]), rtol=1e-4, atol=1e-5)
    idx = np.frombuffer(base64.b64decode(fc["top_index"]), np.int32).reshape(-1, k)
    assert np.all(np.abs(top[:, :-1]) >= np.abs(top[:, 1:])) and idx.max() < fc["in_shape"][0]


def test_the_page_asks_for_nothing_from_the_network(tmp_path):
    html = explain.render(page_data(small_net()))
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", html)


def test_two_tower_net_is_drawn_as_its_grouped_twin():
    tn.manual_seed(0)
    twin = models.alexnet2012(num_classes=10, devices=("cpu:0", "cpu:0"))
    net, note = explain.one_device_net(twin)
    assert "merge_towers" in note and isinstance(net, nn.Sequential)
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    twin.eval(), net.eval()
    np.testing.assert_allclose(net(tn.tensor(x)).data, twin(tn.tensor(x)).data, rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"), reason="needs Fashion-MNIST from Debian")
def test_command_line_writes_the_page_and_prints_its_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)                          # no checkpoints/ here: the net is untrained
    out = tmp_path / "page.html"
    assert explain.main(["--out", str(out), "--index", "3", "--class", "Bag"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', out.read_text(), re.S).group(1))
    assert data["source"].startswith("untrained") and data["target_name"] == "Bag"
    assert data["image_text"] == "Fashion-MNIST test image 3"


def test_an_image_file_is_fed_as_the_model_sees_images(tmp_path, capsys, monkeypatch):
    from PIL import Image
    monkeypatch.chdir(tmp_path)
    img = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "page.html"
    assert explain.main(["--image", str(img), "--out", str(out), "--checkpoint", str(tmp_path / "none.npz")]) == 2
    assert "--checkpoint" in capsys.readouterr().err
    assert explain.main(["--image", str(img), "--out", str(out)]) == 0
    data = json.loads(re.search(r'<script id="data" type="application/json">(.*?)</script>', out.read_text(), re.S).group(1))
    assert data["input"]["shape"] == [1, 28, 28] and data["fed"]["raw_shape"] == [30, 40]   # grey, as the net reads
    assert data["label"] is None and data["image_text"] == str(img)


def test_command_line_errors_name_the_flag(capsys):
    assert explain.main(["--model", "lenet"]) == 2
    assert "--model 'lenet'" in capsys.readouterr().err
    assert explain.main(["--checkpoint", "/nonexistent.npz"]) == 2
    assert "--checkpoint /nonexistent.npz" in capsys.readouterr().err
    with pytest.raises(explain.ExplainError, match="--class 'Hat'"):
        explain.parse_class("Hat", ["Coat", "Bag"])
    assert explain.parse_class("bag", ["Coat", "Bag"]) == 1


def test_a_training_checkpoint_loads_with_its_run_settings_and_the_header_says_trained(tmp_path, monkeypatch):
    from tinynet.train.checkpoint import write_checkpoint
    model = small_net(width=8, seed=5)
    path = tmp_path / "checkpoints" / "alexnet-small-fashion-mnist" / "checkpoint.npz"
    path.parent.mkdir(parents=True)
    settings = {"model": "alexnet-small", "width": 8, "image_size": 28, "dropout": 0.25}
    write_checkpoint(path, model.state_dict(), tn.optim.SGD(model.parameters(), lr=0.1).state_dict(),
                     {"epoch": 3, "step": 0, "settings": settings})
    monkeypatch.chdir(tmp_path)
    assert explain.default_checkpoint("alexnet-small") == os.path.relpath(path, tmp_path)
    loaded, side, channels, classes, source = explain.load_model("alexnet-small", explain.default_checkpoint("alexnet-small"))
    assert (side, channels, classes) == (28, 1, 10) and source.startswith("trained") and "after epoch 3" in source
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[name], value)
    with pytest.raises(explain.ExplainError, match="holds a alexnet-small net, not d2l"):
        explain.load_model("d2l", str(path))


def test_pytorch_weights_load_through_load_torch(tmp_path):
    torch = pytest.importorskip("torch")
    model = explain._registry()["alexnet-small"][0](10, {})[0]
    path = tmp_path / "small.pth"
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in model.state_dict().items()}, path)
    loaded, _, _, classes, source = explain.load_model("alexnet-small", weights=str(path))
    assert classes == 10 and source == f"weights from {path}"
    np.testing.assert_array_equal(loaded.state_dict()["conv2.weight"], model.state_dict()["conv2.weight"])
    with pytest.raises(explain.ExplainError, match="do not fit"):
        explain.load_model("d2l", weights=str(path))


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("name", ["alexnet-small", "alexnet", "alexnet2012", "torchvision", "torchvision-lrn", "d2l"])
def test_every_registered_model_makes_a_page_whose_every_layer_explains_a_unit(name, driver, tmp_path):
    build, side, channels, classes = explain._registry()[name]
    model, side, channels = build(classes, {})
    data = explain.build_page_data(name, model, side, channels, classes, "untrained", sample_image(), 1, NAMES,
                                   mean=(0.3,), std=(0.35,))
    assert data["layers"][-1]["shape"] == [classes]
    path = tmp_path / "page.html"
    path.write_text(explain.render(data))
    every_layer_explains_a_unit(driver, path, data)


def every_layer_explains_a_unit(driver, path, data):
    """Select a middle unit of every layer: each shows tinynet's value, with no error in the console."""
    from selenium.webdriver.common.by import By
    open_page(driver, path)
    for li, rec in enumerate(data["layers"]):
        values = inflate(rec["values"]).reshape(rec["shape"])
        c = rec["shape"][0] // 2
        y, x = (rec["shape"][1] // 2, rec["shape"][2] // 2) if len(rec["shape"]) == 3 else (0, 0)
        driver.execute_script("selectUnit(arguments[0], arguments[1], arguments[2], arguments[3])", li, c, y, x)
        want = values[c, y, x] if len(rec["shape"]) == 3 else values[c]
        assert number(driver, "#unit-value") == pytest.approx(float(want), rel=1e-6, abs=1e-12), rec["name"]
        for written_out in ("unit-sum", "lrn-result"):      # the page's sum of the stored numbers
            if driver.find_elements(By.ID, written_out):
                assert number(driver, "#" + written_out) == pytest.approx(float(want), rel=1e-4, abs=1e-5), rec["name"]
    assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []


@pytest.mark.browser
def test_every_layer_of_the_small_net_explains_a_unit(driver, small_page):
    every_layer_explains_a_unit(driver, small_page[0], small_page[1])


# ================================================================= in the browser

@pytest.fixture(scope="module")
def driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="tinynet-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run",
                 f"--user-data-dir={profile}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield d
    d.quit()


def open_page(driver, path):
    driver.get_log("browser"), driver.get_log("performance")     # start both logs afresh
    driver.get("file://" + os.path.abspath(path))
    deadline = time.time() + 120
    while time.time() < deadline:
        ready = driver.execute_script("return document.body.dataset.ready || null")
        if ready:
            assert ready == "1", ready
            return
        time.sleep(0.1)
    raise AssertionError("the page did not finish drawing in 120 s")


def click_unit(driver, layer, tower, c, y, x):
    """Click channel c's unit (y, x) on the canvas of `layer`'s tower, as a learner's mouse would."""
    from selenium.webdriver.common.by import By
    canvas = driver.find_element(By.ID, f"map-{layer}-t{tower}")
    tile_h, tile_w, scale = json.loads(canvas.get_attribute("data-tile"))
    cols, k = int(canvas.get_attribute("data-cols")), c - int(canvas.get_attribute("data-c0"))
    px = (k % cols) * tile_w + x * scale
    py = (k // cols) * tile_h + y * scale
    click_at(driver, canvas, px, py, scale)
    shown = driver.find_element(By.ID, "unit-value").get_attribute("data-unit")
    assert shown == f"{layer},{c},{y},{x}", f"clicked {layer} ({c}, {y}, {x}) but the page selected {shown}"


def click_at(driver, canvas, px, py, scale):
    """Click the canvas pixel (px, py) of a unit `scale` pixels wide. WebDriver offsets count from
    the element's in-view centre, floor((left + right) / 2) in the viewport, and the canvas may sit
    at a fractional position: aim at the middle of the unit from there."""
    from selenium.webdriver.common.action_chains import ActionChains
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas)
    r = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]", canvas)
    cx, cy = math.floor((r[0] + r[2]) / 2), math.floor((r[1] + r[3]) / 2)
    dx = math.floor(r[0] + px + scale / 2) - cx
    dy = math.floor(r[1] + py + scale / 2) - cy
    ActionChains(driver).move_to_element_with_offset(canvas, dx, dy).click().perform()


def number(driver, css):
    from selenium.webdriver.common.by import By
    return float(driver.find_element(By.CSS_SELECTOR, css).get_attribute("data-value"))


@pytest.fixture(scope="module")
def small_page(tmp_path_factory):
    model = small_net(width=8)
    data = page_data(model)
    path = tmp_path_factory.mktemp("explain") / "small.html"
    path.write_text(explain.render(data))
    x = inflate(data["input"]["values"]).reshape(data["input"]["shape"])
    return path, data, reference(model, x, data["target"])


@pytest.mark.browser
def test_page_loads_from_file_with_no_console_error_and_no_network_request(driver, small_page):
    open_page(driver, small_page[0])
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    sent = [json.loads(e["message"])["message"]["params"] for e in driver.get_log("performance")
            if json.loads(e["message"])["message"]["method"] == "Network.requestWillBeSent"]
    urls = [p["request"]["url"] for p in sent]
    assert not [u for u in urls if u.startswith(("http:", "https:", "ws:", "wss:", "ftp:"))], urls
    page = "file://" + os.path.abspath(small_page[0])
    ours = [p["request"]["url"] for p in sent if p.get("documentURL") == page]
    assert page in ours and all(u.startswith(("file://", "data:", "blob:")) for u in ours), ours


def check_conv2_tower2(driver, outs, layer_names, c, y, x, pool_channels):
    click_unit(driver, "conv2", 2, c, y, x)
    shown, summed = number(driver, "#unit-computed"), number(driver, "#unit-sum")
    engine = float(outs["conv2"][c, y, x])
    assert shown == pytest.approx(engine, rel=1e-6, abs=1e-7)             # the stored float32, read back
    assert summed == pytest.approx(engine, rel=1e-4, abs=1e-5)            # the written-out sum: float32 rounding apart
    from selenium.webdriver.common.by import By
    t1 = driver.find_element(By.ID, "map-pool1-t1").get_attribute("data-outlined")
    t2 = driver.find_element(By.ID, "map-pool1-t2").get_attribute("data-outlined")
    assert not t1 and sorted(map(int, t2.split(","))) == list(range(pool_channels // 2, pool_channels))
    assert driver.find_element(By.ID, "input-canvas").get_attribute("data-rf")


@pytest.mark.browser
def test_clicking_a_conv2_unit_of_tower_2_shows_tinynets_value_and_outlines_tower_2_only(driver, small_page):
    path, data, (outs, _, _, _) = small_page
    open_page(driver, path)
    c = data["layers"][4]["shape"][0] - 3                                   # a filter of tower 2
    pool1 = next(r for r in data["layers"] if r["name"] == "pool1")["shape"][0]
    check_conv2_tower2(driver, outs, None, c, 5, 7, pool1)
    check_conv2_tower2(driver, outs, None, c, 0, 0, pool1)                   # a corner: the padding zeros


@pytest.mark.browser
def test_top5_on_the_page_are_tinynets(driver, small_page):
    from selenium.webdriver.common.by import By
    path, data, (_, logits, _, _) = small_page
    open_page(driver, path)
    rows = driver.find_elements(By.CSS_SELECTOR, "#top5 tr.top5-row")
    z = logits.astype(np.float64)
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    assert [int(r.get_attribute("data-index")) for r in rows] == list(np.argsort(-p)[:5])
    np.testing.assert_allclose([float(r.get_attribute("data-prob")) for r in rows], np.sort(p)[::-1][:5], atol=1e-6)


@pytest.mark.browser
def test_input_gradients_on_the_page_are_tinynets_backward(driver, small_page):
    from selenium.webdriver.common.by import By
    path, data, (_, _, dx, _) = small_page
    open_page(driver, path)
    canvas = driver.find_element(By.ID, "saliency-canvas")
    w, h = int(canvas.get_attribute("width")), int(canvas.get_attribute("height"))
    scale = w // dx.shape[2]
    for y, x in [(10, 12), (14, 14), (20, 8)]:
        click_at(driver, canvas, x * scale, y * scale, scale)
        assert driver.find_element(By.ID, "pixel-table").get_attribute("data-pixel") == f"{y},{x}"
        cells = driver.find_elements(By.CSS_SELECTOR, "#pixel-table td[data-value]")
        np.testing.assert_allclose([float(c.get_attribute("data-value")) for c in cells], dx[:, y, x], rtol=1e-5, atol=1e-9)


@pytest.mark.browser
def test_an_lrn_units_written_out_computation_reproduces_its_value(driver, small_page):
    path, data, (outs, _, _, _) = small_page
    open_page(driver, path)
    for tower, c in [(1, 1), (2, data["layers"][0]["shape"][0] - 1)]:      # a window cut by a tower's edge
        click_unit(driver, "lrn1", tower, c, 14, 13)
        engine = float(outs["lrn1"][c, 14, 13])
        assert number(driver, "#unit-computed") == pytest.approx(engine, rel=1e-6)
        assert number(driver, "#lrn-result") == pytest.approx(engine, rel=1e-5)


@pytest.mark.browser
@pytest.mark.slow
def test_paper_net_at_224_conv2_of_tower_2_in_the_browser(driver, tmp_path):
    tn.manual_seed(0)
    model = models.alexnet(num_classes=10)
    data = explain.build_page_data("alexnet", model, 224, 3, 10, "untrained", sample_image(), 1, NAMES,
                                   mean=(0.3,), std=(0.35,))
    path = tmp_path / "paper.html"
    path.write_text(explain.render(data))
    x = inflate(data["input"]["values"]).reshape(data["input"]["shape"])
    outs = reference(model, x, data["target"])[0]
    open_page(driver, path)
    check_conv2_tower2(driver, outs, None, 200, 13, 9, 96)


@pytest.mark.browser
def test_training_curves_per_layer_statistics_and_warnings_of_a_diagnose_log(driver, tmp_path):
    from selenium.webdriver.common.by import By
    from test_diagnose import run
    _, warnings, records = run(tmp_path, zero=True, epochs=2)          # zero weights: the loss and dead warnings
    path = tmp_path / "page.html"
    path.write_text(explain.render(page_data(small_net(), log=records, log_path="log.jsonl")))
    open_page(driver, path)
    assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")] == []
    table = driver.find_element(By.ID, "diagnose-table")
    names = [r.find_elements(By.TAG_NAME, "td")[0].text for r in table.find_elements(By.TAG_NAME, "tr")[1:]]
    assert names == list(records[-1]["diagnose"][-1]["layers"])
    shown = driver.find_element(By.ID, "diagnose-warnings").text
    assert warnings and all(w in shown for w in warnings)
    assert len(driver.find_elements(By.CSS_SELECTOR, "#training svg polyline")) >= 4
