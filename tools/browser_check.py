"""Open the built site in headless Chromium, as a reader would, and check what it shows.

    python tools/browser_check.py [--out _build/screenshots]

Serves _build/html on 127.0.0.1, loads every page in headless Chromium (Debian's `chromium`;
`apt-get install chromium`), and checks on the DOM *after* scripts ran that MathJax typeset the
math (no raw `$...$` left, `mjx-container` elements present), that every image the page uses was
fetched from the local server, and that nothing was requested from another host. Saves a
screenshot of each page to look at. Exits non-zero listing every problem.
"""
import argparse, functools, http.server, re, shutil, subprocess, sys, tempfile, threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTML = ROOT / '_build' / 'html'
FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--hide-scrollbars', '--virtual-time-budget=20000']


class _Log(http.server.SimpleHTTPRequestHandler):
    requests: list = []
    def log_message(self, fmt, *args): _Log.requests.append((self.path, args[1] if len(args) > 1 else ''))


def chromium() -> str:
    exe = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
    if not exe: sys.exit('browser check: no Chromium found; install it with `apt-get install chromium` (Debian) and run again')
    return exe


def run_chromium(exe, url, *extra, timeout=90):
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([exe, *FLAGS, f'--user-data-dir={profile}', *extra, url], capture_output=True, text=True, timeout=timeout)
    return r.stdout


def shown(path: Path) -> str:
    "`path` as printed: relative to the checkout when inside it, else absolute."
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', type=Path, default=ROOT / '_build' / 'screenshots', help='folder for the screenshots (anywhere)')
    args = ap.parse_args(argv)
    args.out = args.out.resolve()
    if not (HTML / 'index.html').is_file(): sys.exit(f'browser check: {HTML}/index.html missing: run `make site` first')
    exe = chromium()
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Log, directory=str(HTML)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f'http://127.0.0.1:{server.server_address[1]}'
    args.out.mkdir(parents=True, exist_ok=True)
    problems = []
    pages = sorted(p.name for p in HTML.glob('*.html') if p.stem not in ('genindex', 'search'))
    for page in pages:
        _Log.requests.clear()
        dom = run_chromium(exe, f'{base}/{page}', '--dump-dom')
        requested = {path.split('?')[0] for path, status in _Log.requests if str(status) == '200'}
        failed = [path for path, status in _Log.requests if str(status) not in ('200', '304') and path != '/favicon.ico']
        n_math = dom.count('<mjx-container')
        raw_math = re.findall(r'class="math notranslate nohighlight">\s*\\\(', dom)
        imgs = re.findall(r'<img [^>]*src="([^"]+)"', dom)
        missing = [i for i in imgs if not i.startswith('data:') and '/' + i.lstrip('./') not in requested]
        external = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(https?://(?!127\.0\.0\.1)[^"]+)"', dom)
        external = [e for e in external if not re.search(r'<a ', e)]
        src_has_math = 'class="math notranslate' in (HTML / page).read_text(encoding='utf-8')
        if not dom.strip(): problems.append(f'{page}: Chromium returned no DOM')
        if src_has_math and n_math == 0: problems.append(f'{page}: math was not typeset by MathJax')
        if raw_math: problems.append(f'{page}: {len(raw_math)} math elements left untypeset')
        if missing: problems.append(f'{page}: images not loaded: {missing}')
        if failed: problems.append(f'{page}: failed requests {failed}')
        if external: problems.append(f'{page}: loads from other hosts: {external}')
        shot = args.out / (Path(page).stem + '.png')
        run_chromium(exe, f'{base}/{page}', f'--screenshot={shot}', '--window-size=1280,2200')
        print(f'{page:20s} math typeset: {n_math:4d}   images loaded: {len(imgs) - len(missing)}/{len(imgs)}   screenshot: {shown(shot)}')
    # search: the search page must find a word that appears in the course
    _Log.requests.clear()
    dom = run_chromium(exe, f'{base}/search.html?q=backpropagation', '--dump-dom')
    if 'foundations.html' not in dom: problems.append("search.html?q=backpropagation does not list foundations.html")
    else: print('search for "backpropagation" lists foundations.html')
    server.shutdown()
    if problems: sys.exit('browser check failed:\n  ' + '\n  '.join(problems))
    print(f'browser check: {len(pages)} pages OK; screenshots in {shown(args.out)}')


if __name__ == '__main__':
    main()
