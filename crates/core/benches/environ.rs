//! Building the WSGI environ dict from a decoded request, in time per
//! request: a browser's GET as nginx 1.22 sends it through the stock
//! `/etc/nginx/uwsgi_params` (21 params), and the same with a 16 KiB cookie.
//! Timed: `EnvironBuilder::build` with warm caches (as on a Python thread
//! after its first request), and dropping the dict.
//!
//! Python starts as the gateway starts it (`Interpreter::start`, with the
//! built-in demo app); build.rs pins the libpython built against (rpath),
//! and the bench refuses to run on another one.
//!
//! `cargo bench -p rustgi-core -- --warm-up-time 1 --measurement-time 3`

use criterion::Criterion;
use pyo3::prelude::*;
use rustgi_core::{AppSpec, EnvironBuilder, EnvironSettings, Interpreter, PythonSetup};
use rustgi_model::{Param, Request};

fn request(cookie: &str) -> Request {
    let params = [
        ("QUERY_STRING", "page=2&sort=new"),
        ("REQUEST_METHOD", "GET"),
        ("CONTENT_TYPE", ""),
        ("CONTENT_LENGTH", ""),
        ("REQUEST_URI", "/articles/2026/11/rustgi?page=2&sort=new"),
        ("PATH_INFO", "/articles/2026/11/rustgi"),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", "http"),
        ("REMOTE_ADDR", "192.0.2.17"),
        ("REMOTE_PORT", "51234"),
        ("SERVER_PORT", "80"),
        ("SERVER_NAME", "example.org"),
        ("HTTP_HOST", "example.org"),
        (
            "HTTP_USER_AGENT",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "HTTP_ACCEPT",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("HTTP_ACCEPT_LANGUAGE", "en-GB,en;q=0.5"),
        ("HTTP_ACCEPT_ENCODING", "gzip, deflate, br, zstd"),
        ("HTTP_REFERER", "http://example.org/articles/"),
        ("HTTP_CONNECTION", "keep-alive"),
        ("HTTP_COOKIE", cookie),
    ];
    Request {
        params: params
            .into_iter()
            .map(|(name, value)| Param::new(name.as_bytes().to_vec(), value.as_bytes().to_vec()))
            .collect(),
        content_length: 0,
        warnings: Vec::new(),
    }
}

/// The libpython this process mapped, from /proc/self/maps.
fn loaded_libpython() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.contains("libpython"))
        .unwrap_or("none")
        .to_string()
}

fn environ(c: &mut Criterion) {
    let session = "sessionid=3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e; csrftoken=Zx8Kq2Lm4Np6Rt8Vw0Yb";
    let big = format!("big={}", "x".repeat(16 * 1024 - 4));
    let cases = [
        ("nginx_get", request(session)),
        ("cookie_16k", request(&big)),
    ];
    Python::attach(|py| {
        let settings = EnvironSettings {
            multithread: true,
            ..EnvironSettings::default()
        };
        let mut builder = EnvironBuilder::new(py, settings).expect("a builder");
        let input = py.import("io").and_then(|io| io.call_method0("BytesIO"));
        let input = input.expect("io.BytesIO()");
        let errors = py.import("sys").and_then(|sys| sys.getattr("stderr"));
        let errors = errors.expect("sys.stderr");
        let mut group = c.benchmark_group("environ");
        for (name, request) in &cases {
            let environ = builder.build(py, request, input.clone(), errors.clone());
            let environ = environ.expect("an environ");
            assert_eq!(environ.len(), 21 + 10, "the params, SCRIPT_NAME, wsgi.*");
            group.bench_function(*name, |b| {
                b.iter(|| {
                    builder
                        .build(py, request, input.clone(), errors.clone())
                        .expect("an environ")
                })
            });
        }
        group.finish();
    });
}

fn main() {
    let setup = PythonSetup {
        app: AppSpec::Demo,
        venv: None,
        pythonpath: Vec::new(),
    };
    let interpreter = Interpreter::start(&setup).expect("Python starts");
    let libpython = loaded_libpython();
    eprintln!(
        "libpython: {libpython}\npython: {}",
        interpreter.description
    );
    if let Some(built) = option_env!("RUSTGI_BUILD_PYTHON_PREFIX") {
        assert!(
            libpython.starts_with(built),
            "built against the Python at {built}, but the loader took {libpython}"
        );
    }

    let mut criterion = Criterion::default().configure_from_args();
    environ(&mut criterion);
    criterion.final_summary();
    interpreter.finalize();
}
