"""scripts/bench.py --network: cachegate over a throttled link, at scale and under load.

Run through bench.py (it builds the release binary and passes its helpers in).
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from throttle import Throttle


def start_nginx(work):
    """nginx with WebDAV (as the README configures it) on a free loopback port."""
    d = os.path.join(work, "nginx")
    for sub in ("root", "logs", "body"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    import socket
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    user = "user root;" if os.geteuid() == 0 else ""
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off;
{user}
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/logs/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  server {{
    listen 127.0.0.1:{port};
    root {d}/root;
    location / {{
      dav_methods PUT DELETE MOVE;
      create_full_put_path on;
      client_max_body_size 0;
      autoindex on;
      autoindex_format json;
    }}
  }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", d], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                sys.exit("nginx did not start")
            time.sleep(0.05)
    return proc, port


def project(work, name):
    proj = os.path.join(work, name)
    os.makedirs(proj, exist_ok=True)
    with open(os.path.join(proj, "package-lock.json"), "w") as f:
        f.write('{"bench": "%s"}\n' % name)
    return proj


def write_binaries(tree, mb, files):
    """`files` incompressible files of `mb` MB in all: prebuilt binaries (esbuild, sharp,
    Electron) make real dependency trees whose archive is as large as the tree."""
    os.makedirs(tree, exist_ok=True)
    for i in range(files):
        with open(os.path.join(tree, f"bin-{i:04}.node"), "wb") as f:
            for _ in range(mb // files):
                f.write(os.urandom(1 << 20))


def cg_json(cg, args, cwd, env):
    out = subprocess.run(f"{cg} {args}", shell=True, cwd=cwd, env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def mb(x):
    return f"{x / 1e6:,.0f} MB"


def link_figures(args, cg, work, env, stores, timed, sh, du, make_tree):
    """One stream vs parallel vs whole-then-extract, and a local-tier hit vs a remote hit."""
    rows = []
    tier_rows = []
    links = []
    saves = []
    workloads = [w for w, on in ((args.net_files, "tree" in args.net_parts),
                                 (None, "blob" in args.net_parts)) if on]
    for files in workloads:
        proj = project(work, "net-" + ("tree" if files else "blob"))
        tree = os.path.join(proj, "node_modules")
        if not os.path.isdir(tree):
            if files:
                sh(f"python3 {make_tree} {tree} --files {files}")
            else:
                write_binaries(tree, args.blob_mb, args.blob_files)
        label = (f"{du(tree) / 1e9:.2f} GB tree, {files:,} files" if files
                 else f"{du(tree) / 1e9:.2f} GB tree, {args.blob_files:,} incompressible files")
        base = "--lock package-lock.json"
        for name, s in stores.items():
            t, r = timed(f"{cg} save {base} --backend '{s['direct']}'", proj, env)
            saves.append((label, name, t, r))
        local = os.path.join(work, "dir-store")
        sh(f"{cg} save {base} --backend {local}", cwd=proj, env=env)
        listed = cg_json(cg, f"ls --json --backend '{stores['nginx']['direct']}'", proj, env)
        ours = next(e for e in listed if e["namespace"] == os.path.basename(proj))
        archive = ours["archive"]
        size = ours["archive_bytes"]
        dl = os.path.join(work, "whole.tar.zst")
        extract = os.path.join(work, "extract")
        modes = []
        for name, s in stores.items():
            modes.append((f"{name}: one stream", f"{cg} restore {base} --concurrency 1 --backend '{s['slow']}'"))
            modes.append((f"{name}: parallel (default)", f"{cg} restore {base} --backend '{s['slow']}'"))
        whole = (f"curl -sf -o {dl} {stores['nginx']['slow']}/{archive} && mkdir -p {extract} "
                 f"&& tar -I zstd -xf {dl} -C {extract}")
        modes.append(("nginx: whole archive, then extract", whole))
        # What creating the files costs with no network at all: the floor for any store.
        modes.append(("local directory store, no network", f"{cg} restore {base} --backend {local}"))
        times = {m: [] for m, _ in modes}
        rss = {m: 0 for m, _ in modes}
        for _ in range(args.rounds):
            for m, cmd in modes:
                shutil.rmtree(tree, ignore_errors=True)
                shutil.rmtree(extract, ignore_errors=True)
                t, r = timed(cmd, proj, env)
                times[m].append(t)
                rss[m] = max(rss[m], r)
        shutil.rmtree(extract, ignore_errors=True)
        if os.path.exists(dl):
            os.remove(dl)
        chunks = max(1, -(-size // (4 << 20)))
        streams = min(8, chunks)
        # What the link (and this machine's proxy) carries with that many streams: curl
        # fetching the archive as as many ranges at once, nothing else running.
        t0 = time.perf_counter()
        part = -(-size // streams)
        curls = [subprocess.Popen(
            f"curl -sf -o /dev/null -r {i * part}-{min(size, (i + 1) * part) - 1} "
            f"{stores['nginx']['slow']}/{archive}", shell=True) for i in range(streams)]
        for c in curls:
            c.wait()
        aggregate = size / (time.perf_counter() - t0)
        ideal = size / aggregate
        links.append((label, streams, aggregate))
        med = {m: statistics.median(v) for m, v in times.items()}
        for name in stores:
            one, par = med[f"{name}: one stream"], med[f"{name}: parallel (default)"]
            rows.append((label, size, f"{name}: one stream", one, rss[f"{name}: one stream"], None))
            rows.append((label, size, f"{name}: parallel (default)", par,
                         rss[f"{name}: parallel (default)"], (one / par, par / ideal)))
        for m in ("nginx: whole archive, then extract", "local directory store, no network"):
            rows.append((label, size, m, med[m], rss[m], None))

        # The local tier: filled by one remote hit, then a tier hit against a remote hit.
        tier_dir = os.path.join(work, "tier-" + ("tree" if files else "blob"))
        shutil.rmtree(tier_dir, ignore_errors=True)
        slow = stores["nginx"]["slow"]
        shutil.rmtree(tree, ignore_errors=True)
        sh(f"{cg} restore {base} --backend '{slow}' --local-tier {tier_dir}", cwd=proj, env=env)
        tt = {"tier": [], "remote": []}
        tr = {"tier": 0, "remote": 0}
        for _ in range(args.rounds):
            for k, cmd in (("tier", f"{cg} restore {base} --backend '{slow}' --local-tier {tier_dir}"),
                           ("remote", f"{cg} restore {base} --backend '{slow}'")):
                shutil.rmtree(tree, ignore_errors=True)
                t, r = timed(cmd, proj, env)
                tt[k].append(t)
                tr[k] = max(tr[k], r)
        tier_rows.append((label, statistics.median(tt["tier"]), statistics.median(tt["remote"]),
                          tr["tier"], tr["remote"]))
        # A --work directory keeps the restored tree: generating 1 GB again takes minutes.
        if not args.work:
            shutil.rmtree(tree, ignore_errors=True)
    return rows, tier_rows, links, saves


def synthetic_entries(template, n, names=100):
    """(object name, bytes) for n entries spread over `names` cache names, laid out as a real
    save writes them (`v2/<project>/<scope>/<name>/`, taken from the template's archive):
    each with its own key, a creation time 7 s apart (a week for 100,000 entries, so
    --max-size weighs many hours), a tiny archive, and every third one a last-use record."""
    now = int(time.time())
    root = template["archive"].rsplit("/", 2)[0]
    for i in range(n):
        key = f"{i:064x}"
        name = f"n{i % names}"
        arch = f"{root}/{name}/{key}-0000000000000001.tar.zst"
        m = dict(template, key=key, name=name, archive=arch, created=now - 7 * i, archive_size=8)
        m["components"] = dict(template["components"], name=name)
        m["signature"] = None
        yield f"{root}/{name}/{key}.json", json.dumps(m).encode()
        yield arch, b"\x28\xb5\x2f\xfd\x00\x00\x00\x00"
        if i % 3 == 0:
            used = {"last_used": now - i, "hit_days": 1 + i % 5}
            yield f"{root}/{name}/{key}.used", json.dumps(used).encode()


def scale_figures(args, cg, work, env, garage_endpoint, nginx_port, keys, timed, sh, make_tree):
    """ls, prune --keep 1 --dry-run and a real prune --max-size (half the store) over many
    entries: time and peak RSS."""
    proj = project(work, "scale")
    sh(f"python3 {make_tree} {os.path.join(proj, 'node_modules')} --files 50")
    store = os.path.join(work, "scale-template")
    shutil.rmtree(store, ignore_errors=True)
    sh(f"{cg} save --lock package-lock.json --backend {store}", cwd=proj, env=env)
    tpl_path = next(os.path.join(d, f) for d, _, fs in os.walk(store) for f in fs if f.endswith(".json"))
    with open(tpl_path) as f:
        template = json.load(f)
    rows = []

    def measure(label, n, backend):
        for what, cmd in (("ls", f"ls --backend {backend}"),
                          ("prune --keep 1 --dry-run", f"prune --keep 1 --dry-run --backend {backend}"),
                          ("prune --max-size (half)", f"prune --max-size {4 * n} --backend {backend}")):
            t, r = timed(f"{cg} {cmd} > /dev/null", proj, env)
            rows.append((label, n, what, t, r))
        # The real prune kept what fits in half the archive bytes: about half the entries.
        left = cg_json(cg, f"ls --json --backend {backend}", proj, env)
        if not n // 2 - names_slack <= len(left) <= n // 2:
            sys.exit(f"prune --max-size {4 * n} left {len(left)} of {n} entries")

    def write_entries(d, n):
        shutil.rmtree(d, ignore_errors=True)
        for name, data in synthetic_entries(template, n):
            p = os.path.join(d, name)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)

    names_slack = 100
    for n in [int(x) for x in args.ls_dir.split(",") if x]:
        d = os.path.join(work, f"scale-dir-{n}")
        write_entries(d, n)
        measure("directory", n, d)
        shutil.rmtree(d)
    for n in [int(x) for x in args.ls_http.split(",") if x]:
        # nginx serves its root from this disk: the entries are written there directly.
        prefix = f"scale{n}"
        d = os.path.join(work, "nginx", "root", prefix)
        write_entries(d, n)
        measure("nginx", n, f"http://127.0.0.1:{nginx_port}/{prefix}")
        shutil.rmtree(d)
    for n in [int(x) for x in args.ls_s3.split(",") if x]:
        prefix = f"scale{n}"
        up = tempfile.mkdtemp(dir=work)
        cfg = os.path.join(up, "curl.cfg")
        objects = 0
        with open(cfg, "w") as c:
            for i, (name, data) in enumerate(synthetic_entries(template, n)):
                p = os.path.join(up, f"{i}")
                with open(p, "wb") as f:
                    f.write(data)
                c.write(f'url = "{garage_endpoint}/bench/{prefix}/{name}"\nupload-file = "{p}"\n')
                objects += 1
        t0 = time.time()
        # curl's own SigV4; 32 uploads in flight.
        sh(f"curl -sf --parallel --parallel-max 32 --aws-sigv4 aws:amz:garage:s3 "
           f"-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "
           f"--user {keys['AWS_ACCESS_KEY_ID']}:{keys['AWS_SECRET_ACCESS_KEY']} -K {cfg} -o /dev/null",
           cwd=up, env=env)
        upload = time.time() - t0
        shutil.rmtree(up)
        measure("Garage", n, f"'s3://bench/{prefix}?endpoint={garage_endpoint}&region=garage'")
        print(f"(uploaded {objects:,} objects to Garage in {upload:.0f} s)", file=sys.stderr)
    return rows


def load_figures(args, cg, work, env, s3_direct, sh, make_tree):
    """--load concurrent hits against Garage: latency percentiles and failures."""
    src = project(work, "load-src")
    sh(f"python3 {make_tree} {os.path.join(src, 'node_modules')} --files 500")
    sh(f"{cg} save --lock package-lock.json --backend '{s3_direct}'", cwd=src, env=env)
    dirs = []
    for i in range(args.load):
        # The project is named after its directory (no git remote here): every job must be
        # the same project to share the entry, as 50 jobs of one pipeline are.
        d = os.path.join(work, "load", str(i), "load-src")
        os.makedirs(d, exist_ok=True)
        shutil.copy(os.path.join(src, "package-lock.json"), d)
        dirs.append(d)
    lat, fails = [None] * len(dirs), []
    go = threading.Barrier(len(dirs))

    def one(i):
        go.wait()
        t0 = time.perf_counter()
        p = subprocess.run(f"{cg} restore --lock package-lock.json --backend '{s3_direct}'",
                           shell=True, cwd=dirs[i], env=env, capture_output=True, text=True)
        lat[i] = time.perf_counter() - t0
        if p.returncode != 0 or "hit" not in p.stderr:
            fails.append((i, p.returncode, p.stderr[-300:]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(dirs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shutil.rmtree(os.path.join(work, "load"))
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    return statistics.median(lat), p99, max(lat), fails


def run(args, cg, start_garage, timed, sh, du, make_tree):
    for tool in ("nginx", "curl", "zstd", "tar", "/usr/bin/time"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed for --network")
    work = args.work or tempfile.mkdtemp(prefix="cachegate-netbench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHEGATE_", "GITLAB_", "CI_"))}
    gproc, endpoint, keys = start_garage(work)
    nproc, nport = start_nginx(work)
    tg = Throttle(int(endpoint.rsplit(":", 1)[1]), args.rate, args.latency, args.link_rate)
    tn = Throttle(nport, args.rate, args.latency, args.link_rate)
    env = dict(env, **keys)
    stores = {
        "Garage": {"direct": f"s3://bench/net?endpoint={endpoint}&region=garage",
                   "slow": f"s3://bench/net?endpoint=http://127.0.0.1:{tg.port}&region=garage"},
        "nginx": {"direct": f"http://127.0.0.1:{nport}/cache",
                  "slow": f"http://127.0.0.1:{tn.port}/cache"},
    }
    try:
        started = time.time()
        rows, tier_rows, links, saves = link_figures(args, cg, work, env, stores, timed, sh, du, make_tree)
        scale = (scale_figures(args, cg, work, env, endpoint, nport, keys, timed, sh, make_tree)
                 if "scale" in args.net_parts else [])
        p50, p99, worst, fails = (
            load_figures(args, cg, work, env, stores["Garage"]["direct"], sh, make_tree)
            if "load" in args.net_parts else (0, 0, 0, []))
        took = time.time() - started
    finally:
        for p in (gproc, nproc):
            p.kill()
            p.wait()
        tg.close()
        tn.close()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    link = f", {args.link_rate / 1e6:.0f} MB/s for all at once" if args.link_rate else ""
    print(f"link: {args.rate / 1e6:.0f} MB/s per connection{link}, {args.latency * 1000:.0f} ms each way "
          f"(scripts/throttle.py on loopback); {args.rounds} rounds alternating; medians; "
          f"{os.cpu_count()} cores; whole run {took / 60:.0f} min")
    for label, streams, agg in links:
        print(f"{label}: {streams} streams at once carry {agg / 1e6:.0f} MB/s here "
              f"(curl ranges through the proxy; the link-bound time below is the archive at that rate)")
    print()
    print("| workload (archive) | how | time | peak RSS | vs one stream | vs link-bound time |")
    print("|---|---|---|---|---|---|")
    for label, size, how, t, r, extra in rows:
        ratio = f"{extra[0]:.1f}x faster | {extra[1]:.2f}x" if extra else "- | -"
        print(f"| {label} ({mb(size)}) | {how} | {t:.2f} s | {r / 1024:.0f} MB | {ratio} |")
    print()
    print("| save (straight to the store, no throttle) | store | time | peak RSS |")
    print("|---|---|---|---|")
    for label, name, t, r in saves:
        print(f"| {label} | {name} | {t:.2f} s | {r / 1024:.0f} MB |")
    print()
    print("| workload | local-tier hit | remote hit (nginx, parallel) | ratio | peak RSS tier / remote |")
    print("|---|---|---|---|---|")
    for label, t, r, rt, rr in tier_rows:
        print(f"| {label} | {t:.2f} s | {r:.2f} s | {t / r:.2f}x | {rt / 1024:.0f} MB / {rr / 1024:.0f} MB |")
    print()
    print("| store | entries | command | time | per 1,000 entries | peak RSS |")
    print("|---|---|---|---|---|---|")
    for store, n, what, t, r in scale:
        print(f"| {store} | {n:,} | {what} | {t:.2f} s | {1000 * t / n:.3f} s | {r / 1024:.0f} MB |")
    print()
    if "load" not in args.net_parts:
        return
    print(f"{args.load} concurrent hits against Garage (loopback, 500-file tree): p50 {p50:.2f} s, "
          f"p99 {p99:.2f} s, slowest {worst:.2f} s, {len(fails)} failures")
    for f in fails[:5]:
        print(f"  failure: {f}")
