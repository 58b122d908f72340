//! The backtest reports in a real browser: Debian's Chromium, headless,
//! renders the kill and the refund report of generated history, and the
//! report's own self-check (written on `<body>`: how many charts, how many
//! drew, every script or console error) must say that every chart drew and
//! nothing went wrong; Chromium's own log must hold no console message. A
//! report broken on purpose (a chart with no coordinates, a script error)
//! shows the check can fail. In CI Chromium is required (`.ci/run` installs
//! it); elsewhere the test says it skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::dlft;

fn ok(out: &Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "dlft failed: {stderr}\n{stdout}");
    stdout.into_owned()
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("DLFT_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs Chromium at {} (.ci/run installs Debian's chromium package)",
        path.display()
    );
    eprintln!("skipped: no Chromium at {} (set DLFT_CHROMIUM, or apt-get install chromium)", path.display());
    None
}

/// What the page's self-check wrote, and Chromium's console lines.
struct Rendered {
    charts: usize,
    drawn: usize,
    errors: String,
    console: Vec<String>,
}

fn render(chromium: &Path, page: &Path) -> Rendered {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            &format!("file://{}", page.display()),
        ])
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed on {}: {stderr}", page.display());
    let body = dom.find("<body").map(|i| &dom[i..dom[i..].find('>').map_or(dom.len(), |j| i + j)]).unwrap_or("");
    let attr = |name: &str| -> Option<String> {
        let start = body.find(&format!("{name}=\""))? + name.len() + 2;
        let end = body[start..].find('"')? + start;
        Some(body[start..end].to_string())
    };
    let number = |name: &str| attr(name).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {name}: {body}"));
    Rendered {
        charts: number("data-charts"),
        drawn: number("data-charts-drawn"),
        errors: attr("data-errors").unwrap_or_else(|| panic!("no data-errors: {body}")),
        console: stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect(),
    }
}

#[test]
fn the_backtest_reports_draw_every_chart_in_a_browser_without_an_error() {
    let Some(chromium) = chromium() else { return };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report_browser");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let data = dir.join("catalog");
    let data = data.to_str().unwrap();
    ok(&dlft(&["datasets", "generate", "--seed", "3", "--days", "6", "--brands", "1", "--out", data]));
    let kill = dir.join("kill.html");
    let refunds = dir.join("refunds.html");
    ok(&dlft(&[
        "backtest",
        "--data",
        data,
        "--policy",
        "policies/kill.toml",
        "--sweep",
        "envelope_floor_cents=3000..9000:3000",
        "--report",
        kill.to_str().unwrap(),
    ]));
    ok(&dlft(&[
        "backtest",
        "--data",
        data,
        "--policy",
        "policies/refund.toml",
        "--sweep",
        "watch_cap_cents=1000..3000:2000",
        "--report",
        refunds.to_str().unwrap(),
    ]));
    for page in [&kill, &refunds] {
        let html = std::fs::read_to_string(page).unwrap();
        let r = render(&chromium, page);
        assert_eq!(r.charts, html.matches("<svg").count(), "{}: every chart counted", page.display());
        assert!(r.charts > 0, "{}", page.display());
        assert_eq!(r.drawn, r.charts, "{}: every chart drew", page.display());
        assert_eq!(r.errors, "", "{}: no script or console error", page.display());
        assert!(r.console.is_empty(), "{}: the page logged {:?}", page.display(), r.console);
    }
    // Broken on purpose: a chart whose line has no coordinates and a
    // script error. The same check catches both.
    let html = std::fs::read_to_string(&kill).unwrap();
    let broken = html
        .replacen("<polyline class=\"mark\"", "<polyline class=\"none\"", usize::MAX)
        .replacen("<rect class=\"mark\"", "<rect class=\"none\"", usize::MAX)
        .replace("</body>", "<script>window.noSuchFunction();</script></body>");
    let page = dir.join("broken.html");
    std::fs::write(&page, broken).unwrap();
    let r = render(&chromium, &page);
    assert!(r.drawn < r.charts, "charts without marks do not count as drawn: {} of {}", r.drawn, r.charts);
    assert!(r.errors.contains("noSuchFunction"), "the script error is caught: {:?}", r.errors);
}
