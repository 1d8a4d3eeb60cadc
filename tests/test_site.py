"""The course as a website (docs/, issue 27): built by Sphinx from the stored notebooks and read in
headless Chromium, the way a learner's browser reads it.

The site is built once per session into a temporary folder (``python -m sphinx -b html docs ...``,
no notebook executed), served from 127.0.0.1, and opened with playwright's Python API in the
system's Chromium (``apt-get install chromium``; playwright's own browsers are never downloaded).
Every request leaving the site is refused and counted as a failure. Checked: every page loads with
no console error and every image decodes; every internal link reaches an existing page and anchor;
MathJax (served from the site) typesets lesson 1's formulas; a search for a word that only one lab
has finds that lab; each notebook page has a Colab link naming its own notebook, a download of the
notebook as committed, no Colab set-up cell and one note of its outputs' scale; the navigation
lists lessons and labs in course order; the API pages mark the modules README says can be copied.

Without the docs extra (``pip install -e ".[docs]"``) or Chromium the tests skip, saying which is
missing; with ``CNNCOURSE_REQUIRE_SITE=1`` (set by .ci/run) they fail instead.
"""
from __future__ import annotations

import functools
import html
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("CNNCOURSE_REQUIRE_SITE") == "1"
DOCS_MODULES = ("sphinx", "myst_nb", "sphinx_book_theme", "playwright", "mathjax")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Chromium without the requests it makes by itself (updates, sync, safe browsing, metrics...)
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
    "--disable-breakpad", "--metrics-recording-only", "--no-first-run", "--no-default-browser-check",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
]


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"{reason}; CNNCOURSE_REQUIRE_SITE=1 says this test must run (as in CI)")
    pytest.skip(reason)


def chromium_path():
    """The system's Chromium: $CNNCOURSE_CHROMIUM, else the first of CHROMIUM_NAMES on the PATH."""
    if os.environ.get("CNNCOURSE_CHROMIUM"):
        return shutil.which(os.environ["CNNCOURSE_CHROMIUM"])
    return next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ============================================================================== the built site
class Site:
    """The built site: its folder, its pages, Sphinx's warnings, the repository's address."""

    def __init__(self, root: Path, warnings: str):
        self.root = root
        self.warnings = warnings
        self.pages = sorted(path.relative_to(root).as_posix() for path in root.rglob("*.html")
                            if not path.relative_to(root).as_posix().startswith("_"))
        conf = _load("docs_conf_for_tests", REPO / "docs" / "conf.py")
        self.conf = conf
        self.owner, self.name = conf.repository()
        self.notebooks = [path.as_posix() for path in conf.course_notebooks()]  # notebooks/..., course order

    def text(self, page: str) -> str:
        return (self.root / page).read_text(encoding="utf-8")


def _require_docs_extra() -> None:
    missing = [name for name in DOCS_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        _unavailable(f"the docs extra is not installed (no {', '.join(missing)}): pip install -e \".[docs]\"")


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Site:
    _require_docs_extra()
    out = tmp_path_factory.mktemp("site")
    warnings = out / "warnings.txt"
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-w", str(warnings), "-d", str(out / "doctrees"),
               "docs", str(out / "html")]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return Site(out / "html", warnings.read_text() if warnings.exists() else "")


@pytest.fixture(scope="session")
def base_url(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(site.root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    _require_docs_extra()        # playwright comes with the docs extra; Chromium may be there without it
    path = chromium_path()
    if path is None:
        _unavailable("no Chromium found (apt-get install chromium, or set CNNCOURSE_CHROMIUM to its path)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class Reader:
    """One browser tab on the site that refuses and records every request leaving it, and records
    console errors, uncaught exceptions and failed responses."""

    def __init__(self, browser, base_url: str):
        self.base = base_url
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
        self.offsite, self.errors = [], []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda message: message.type == "error" and self.errors.append(
            f"console error: {message.text}"))
        self.page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        self.page.on("response", lambda response: response.status >= 400 and self.errors.append(
            f"HTTP {response.status}: {response.url}"))

    def _route(self, route):
        if route.request.url.startswith(self.base):
            route.continue_()
        else:
            self.offsite.append(route.request.url)
            route.abort()

    def open(self, page: str):
        """Go to ``page`` and wait until it has loaded and MathJax (where present) has typeset it."""
        response = self.page.goto(self.base + page, wait_until="load")
        assert response is not None and response.ok, f"{page}: {response and response.status}"
        self.page.evaluate("""() => (window.MathJax && MathJax.startup && MathJax.startup.promise)
                                    ? MathJax.startup.promise.then(() => true) : true""")
        return self.page

    def broken_images(self) -> list:
        """The sources of the images that do not decode (lazy images are made eager first)."""
        return self.page.evaluate("""async () => {
            const images = Array.from(document.images);
            images.forEach(image => { image.loading = 'eager'; });
            const broken = await Promise.all(images.map(image =>
                image.decode().then(() => image.naturalWidth > 0 ? null : image.src, () => image.src)));
            return broken.filter(Boolean);
        }""")


@pytest.fixture
def reader(browser, base_url):
    tab = Reader(browser, base_url)
    yield tab
    tab.context.close()


# ============================================================================ static structure
class _Links(HTMLParser):
    """The hrefs of a page's <a> elements and every id it defines."""

    def __init__(self):
        super().__init__()
        self.hrefs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href") is not None:
            self.hrefs.append(attrs["href"])


def _parse(text: str) -> _Links:
    parser = _Links()
    parser.feed(text)
    return parser


def _visible_text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_build_warns_of_nothing_in_the_pages(site):
    """Warnings about a page (a broken link between notebooks, a bad include) fail; those about a
    docstring of the package are shown, for the module's owner, but do not fail."""
    lines = [line for line in site.warnings.splitlines() if "WARNING" in line or "ERROR" in line]
    docstrings = [line for line in lines if "docstring of" in line]
    if docstrings:
        print("docstring warnings (not failed):\n" + "\n".join(docstrings))
    assert [line for line in lines if line not in docstrings] == []


def test_site_has_every_notebook_readme_page_and_module(site):
    pages = set(site.pages)
    for notebook in site.notebooks:
        assert notebook.replace(".ipynb", ".html") in pages, f"no page for {notebook}"
    for page in ("index.html", "install.html", "teachers.html", "teachers-guide.html", "data.html",
                 "results.html", "command-line.html", "api/index.html", "search.html"):
        assert page in pages, page
    for module in site.conf.api_modules():
        assert f"api/{module}.html" in pages, f"no API page for {module}"
    assert (site.root / "searchindex.js").is_file()


def test_navigation_lists_lessons_each_followed_by_its_labs(site):
    lessons = sorted(path.name for path in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    labs = sorted(path.name for path in (REPO / "notebooks" / "labs").glob("[0-9][0-9]_*.ipynb"))
    expected = []
    for lesson in lessons:
        expected += [f"notebooks/{lesson}"] + [f"notebooks/labs/{lab}" for lab in labs if lab[:2] == lesson[:2]]
    expected += [f"notebooks/labs/{lab}" for lab in labs if f"notebooks/labs/{lab}" not in expected]
    navigation = re.search(r'<nav class="[^"]*bd-docs-nav.*?</nav>', site.text("index.html"), re.S).group(0)
    linked = [href for href in _parse(navigation).hrefs if href.startswith("notebooks/")]
    assert [href.replace(".html", ".ipynb") for href in linked] == expected


def test_every_internal_link_resolves(site):
    ids = {}
    broken = []
    for page in site.pages:
        # docutils links a markup error to its message ("problematic"): a docstring warning that
        # test_build_warns_of_nothing_in_the_pages shows; not a link of the site
        text = re.sub(r'<a href="#id\d+"><span class="problematic"', "<span", site.text(page))
        for href in _parse(text).hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:")):
                continue
            target = urljoin(page, unquote(parts.path)) if parts.path else page
            file = site.root / target
            if file.is_dir():
                file, target = file / "index.html", target.rstrip("/") + "/index.html"
            if not file.is_file():
                broken.append(f"{page}: {href} (no file {target})")
                continue
            if parts.fragment and file.suffix == ".html":
                if target not in ids:
                    ids[target] = _parse(site.text(target)).ids
                if unquote(parts.fragment) not in ids[target]:
                    broken.append(f"{page}: {href} (no id {parts.fragment!r} in {target})")
    assert broken == []


def test_pages_name_no_outside_script_style_or_font(site):
    """Scripts, styles, images and fonts all come from the site (MathJax included): no page or
    style sheet names one on another host."""
    outside = []
    for path in site.root.rglob("*"):
        if path.suffix == ".html":
            for tag in re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*>", path.read_text(encoding="utf-8")):
                if re.search(r'\b(?:src|href)="(?:https?:)?//', tag) and 'rel="canonical"' not in tag:
                    outside.append(f"{path.relative_to(site.root)}: {tag[:200]}")
        elif path.suffix == ".css":
            outside += [f"{path.relative_to(site.root)}: {url}" for url in
                        re.findall(r"url\(\s*['\"]?((?:https?:)?//[^)'\"]+)", path.read_text(encoding="utf-8"))]
    assert outside == []
    assert (site.root / "_static" / "mathjax" / "tex-chtml.js").is_file()


def test_notebook_pages_colab_download_setup_cell_and_scale(site):
    for notebook in site.notebooks:
        page = notebook.replace(".ipynb", ".html")
        text = site.text(page)
        hrefs = _parse(text).hrefs
        expected = f"https://colab.research.google.com/github/{site.owner}/{site.name}/blob/{site.conf.BRANCH}/{notebook}"
        colab = [href for href in hrefs if "colab.research.google.com" in href]
        assert expected in colab, f"{page}: no Colab link to {notebook}"
        assert set(colab) == {expected}, f"{page}: a Colab link to another notebook: {colab}"
        # the download button gives the notebook exactly as committed
        download = f"_sources/{notebook}"
        assert any(urljoin(page, href) == download for href in hrefs), f"{page}: no download of {download}"
        assert (site.root / download).read_bytes() == (REPO / notebook).read_bytes()
        # the Colab set-up cell is not shown
        setup = site.conf.colab_setup_cell(json.loads((REPO / notebook).read_text()))
        if setup is not None:
            shown = _visible_text(text)
            lines = [line.strip() for line in "".join(setup["source"]).splitlines() if len(line.strip()) > 25]
            assert lines and not any(line in shown for line in lines), f"{page}: the Colab set-up cell is shown"
        # the scale of the stored outputs, said once
        notes = re.findall(r'<div class="[^"]*stored-outputs-scale[^"]*">(.*?)</div>\s*</div>', text, re.S)
        assert len(notes) == 1, f"{page}: {len(notes)} notes of the stored outputs' scale"
        assert re.search(r"made at the <strong>\w+</strong> scale", notes[0]), notes[0][:300]


def test_api_marks_exactly_the_modules_readme_says_can_be_copied(site):
    copyable = set(_load("test_copy_for_site", REPO / "tests" / "test_copy.py").readme_copyable())
    marked = set()
    for module in site.conf.api_modules():
        if "copy-alone" in site.text(f"api/{module}.html"):
            marked.add(module.replace(".", "/") + ".py")
    assert marked == copyable
    assert 'class="sig-name descname"' in site.text("api/cnncourse.models.resnet.html"), "autodoc wrote no signature"


# ================================================================================ in the browser
def test_every_page_loads_without_errors_offsite_requests_or_broken_images(reader, site):
    problems = []
    for page in site.pages:
        reader.errors.clear()
        reader.open(page)
        broken = reader.broken_images()
        problems += [f"{page}: {error}" for error in reader.errors]
        problems += [f"{page}: image does not load: {source}" for source in broken]
    assert reader.offsite == [], f"requests that left the site: {sorted(set(reader.offsite))[:20]}"
    assert problems == []


def test_maths_is_rendered_by_mathjax_from_the_site(reader, site):
    page = reader.open(site.notebooks[0].replace(".ipynb", ".html"))  # lesson 1: the convolution formula
    formulas = page.locator(".math").count()
    rendered = page.locator("mjx-container").count()
    assert formulas > 5 and rendered >= formulas, (formulas, rendered)
    assert page.locator("mjx-merror").count() == 0, "MathJax could not typeset a formula"
    assert reader.offsite == []


def _words(text: str) -> set:
    return set(re.findall(r"[a-z]{7,}", text.lower()))


def test_search_finds_the_one_lab_that_has_a_word(reader, site):
    labs = [notebook for notebook in site.notebooks if notebook.startswith("notebooks/labs/")]
    if not labs:
        pytest.skip("no lab in notebooks/labs/ yet")
    import snowballstemmer  # comes with Sphinx; its Porter stemmer is the one the search index uses
    stem = snowballstemmer.stemmer("porter").stemWord
    index = json.loads(re.search(r"Search\.setIndex\((.*)\)\s*$", (site.root / "searchindex.js").read_text(), re.S).group(1))
    docnames = index["docnames"]

    def pages_with(word):
        found = index["terms"].get(stem(word), [])
        found = found if isinstance(found, list) else [found]
        titles = index.get("titleterms", {}).get(stem(word), [])
        return {docnames[i] for i in found} | {docnames[i] for i in (titles if isinstance(titles, list) else [titles])}

    others = set()
    for page in site.pages:
        others |= _words(_visible_text(site.text(page))) if page.replace(".html", ".ipynb") not in labs else set()
    for lab in labs:
        docname = lab.removesuffix(".ipynb")
        prose = "".join("".join(cell["source"]) for cell in json.loads((REPO / lab).read_text())["cells"]
                        if cell["cell_type"] == "markdown")
        candidates = sorted(word for word in _words(prose) - others
                            if pages_with(word) == {docname} and stem(word) == stem(stem(word)))
        if candidates:
            word = candidates[0]
            break
    else:
        pytest.fail("no word of a lab's prose is in that lab alone")
    print(f"searching for {word!r}, which only {lab} has")
    page = reader.open(f"search.html?q={word}")
    page.wait_for_selector("#search-results .search-summary", timeout=20000)
    results = [href.split("#")[0].split("?")[0] for href in
               page.eval_on_selector_all("#search-results ul.search li a", "links => links.map(a => a.getAttribute('href'))")]
    assert results and all(result == f"{docname}.html" for result in results), (word, lab, results)
    assert reader.errors == [] and reader.offsite == []
