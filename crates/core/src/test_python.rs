//! Tests that run Python: the interpreter is started once per test binary,
//! as plainly as pyo3 does it (no application, no venv).

use std::sync::Once;

/// Starts the interpreter (once); then `Python::attach` works anywhere.
pub(crate) fn start() {
    static STARTED: Once = Once::new();
    STARTED.call_once(pyo3::Python::initialize);
}

/// The log entries `run` makes: (target, message, request field).
pub(crate) fn logged(run: impl FnOnce()) -> Vec<(String, String, Option<String>)> {
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

    type Entries = Arc<Mutex<Vec<(String, String, Option<String>)>>>;
    struct Catch(Entries);
    #[derive(Default)]
    struct Fields {
        message: String,
        request: Option<String>,
    }
    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            match field.name() {
                "message" => self.message = format!("{value:?}"),
                "request" => self.request = Some(format!("{value:?}")),
                _ => {}
            }
        }
    }
    impl<S: tracing::Subscriber> Layer<S> for Catch {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let target = event.metadata().target().to_string();
            self.0
                .lock()
                .unwrap()
                .push((target, fields.message, fields.request));
        }
    }
    let entries = Entries::default();
    let subscriber = tracing_subscriber::registry().with(Catch(entries.clone()));
    tracing::subscriber::with_default(subscriber, run);
    entries.lock().unwrap().clone()
}
