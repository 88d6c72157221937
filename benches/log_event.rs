//! One `info!` with two fields inside an entered span with two fields, lines discarded.
//! Compares this crate's JSON layer (export off and on) with tracing-subscriber's JSON
//! formatter, alone and with the tracing-opentelemetry layer, in the same run.
//!
//! Run with `cargo bench --bench log_event`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::trace::TracerProvider as _;
use service_telemetry::{LogWriter, Telemetry};
use tracing::dispatcher::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

struct Discard;

impl LogWriter for Discard {
    fn write_line(&self, line: &[u8]) {
        black_box(line);
    }
}

fn event_in_span(c: &mut Criterion, name: &str, dispatch: &Dispatch) {
    tracing::dispatcher::with_default(dispatch, || {
        let span = tracing::info_span!("request", method = "GET", route = "/orders/{id}");
        let _entered = span.enter();
        c.bench_function(name, |b| {
            b.iter(|| {
                tracing::info!(
                    order_id = black_box(42u64),
                    customer = black_box("ada"),
                    "order loaded"
                )
            })
        });
    });
}

fn ours(c: &mut Criterion, name: &str, env: &'static [(&'static str, &'static str)]) {
    let scoped = Telemetry::builder()
        .with_writer(Discard)
        .env_lookup(move |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        })
        .set_default();
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    event_in_span(c, name, &dispatch);
    drop(scoped);
}

fn log_event(c: &mut Criterion) {
    let fmt_json = Dispatch::new(
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::sink)
            .finish(),
    );
    event_in_span(c, "log_event/tracing_subscriber_fmt_json", &fmt_json);

    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let fmt_json_otel = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")))
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::sink),
            ),
    );
    event_in_span(
        c,
        "log_event/fmt_json_plus_tracing_opentelemetry",
        &fmt_json_otel,
    );

    ours(c, "log_event/service_telemetry_export_off", &[]);
    // Export on to a refused port: spans and log records take the SDK's enqueue path; the
    // batch processors drop what they cannot send, as they would under any tight loop.
    ours(
        c,
        "log_event/service_telemetry_export_on",
        &[
            ("OTEL_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_LOG_LEVEL", "off"),
        ],
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(4));
    targets = log_event
}
criterion_main!(benches);
