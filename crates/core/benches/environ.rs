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
use rustgi_model::Request;
use rustgi_model::sample::{ParamsFile, SampleRequest, cookies, nginx_params};

fn request(cookie: &str) -> Request {
    Request {
        params: nginx_params(ParamsFile::Uwsgi, &SampleRequest::get(cookie)),
        ..Request::default()
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
    let cases = cookies().map(|(name, cookie)| (name, request(&cookie)));
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
