//! A span's whole life: create with two fields, enter, exit, close, behind a batch span
//! processor with a no-op exporter. Same process, same group, for:
//!
//! - `tracing-opentelemetry` with its default settings, the baseline;
//! - the OpenTelemetry SDK's API used directly (no `tracing`), the floor for OTel spans;
//! - this crate with traces exported, and with export off (spans still minted for the ids).
//!
//! - a prototype layer that builds SDK spans directly (`common/direct_layer.rs`, not shipped),
//!   measuring the design proposed in the README for the span targets.
//!
//! The second group is the same with a parent-based 1 % ratio sampler: 99 % of these root
//! spans are dropped, the common case for a busy service.
//!
//! Run with `cargo bench --bench span`.

mod common;
#[path = "common/direct_layer.rs"]
mod direct_layer;

use std::hint::black_box;

use common::{Export, ours};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::Sampler;
use tracing::dispatcher::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

fn tracing_span(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, dispatch: &Dispatch) {
    tracing::dispatcher::with_default(dispatch, || {
        group.bench_function(name, |b| {
            b.iter(|| {
                let span = tracing::info_span!(
                    "request",
                    method = black_box("GET"),
                    route = black_box("/orders/{id}")
                );
                let entered = span.enter();
                drop(black_box(entered));
                drop(span);
            })
        });
    });
}

fn sdk_span(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, sampler: Sampler) {
    let provider = common::sdk_provider(sampler);
    let tracer = provider.tracer("bench");
    group.bench_function(name, |b| {
        b.iter(|| {
            let span = tracer
                .span_builder("request")
                .with_attributes([
                    KeyValue::new("method", black_box("GET")),
                    KeyValue::new("route", black_box("/orders/{id}")),
                ])
                .start(&tracer);
            let cx = Context::current_with_span(span);
            let guard = cx.clone().attach();
            drop(black_box(guard));
            cx.span().end();
        })
    });
    let _ = provider.shutdown();
}

fn otel_layer_defaults(
    sampler: Sampler,
) -> (Dispatch, opentelemetry_sdk::trace::SdkTracerProvider) {
    let provider = common::sdk_provider(sampler);
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench"))),
    );
    (dispatch, provider)
}

fn direct_layer(sampler: Sampler) -> (Dispatch, opentelemetry_sdk::trace::SdkTracerProvider) {
    let provider = common::sdk_provider(sampler);
    let dispatch = Dispatch::new(
        tracing_subscriber::registry().with(direct_layer::DirectLayer {
            tracer: provider.tracer("bench"),
        }),
    );
    (dispatch, provider)
}

fn ours_variant(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    export: Export,
    env: &'static [(&'static str, &'static str)],
) {
    let scoped = ours(export, env);
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    tracing_span(group, name, &dispatch);
    let stats = scoped.telemetry().export_stats();
    eprintln!(
        "{name}: spans exported {} dropped {}",
        stats.traces.exported, stats.traces.dropped
    );
}

fn ratio() -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.01)))
}

const ONE_PERCENT: &[(&str, &str)] = &[
    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
];

fn span_lifecycle(c: &mut Criterion) {
    let mut group = c.benchmark_group("span_lifecycle");
    let (dispatch, provider) =
        otel_layer_defaults(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    tracing_span(&mut group, "tracing_opentelemetry_defaults", &dispatch);
    let _ = provider.shutdown();
    sdk_span(
        &mut group,
        "opentelemetry_sdk_direct",
        Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
    );
    ours_variant(
        &mut group,
        "service_telemetry_exported",
        Export::Traces,
        &[],
    );
    ours_variant(&mut group, "service_telemetry_export_off", Export::Off, &[]);
    let (dispatch, provider) = direct_layer(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    tracing_span(&mut group, "prototype_direct_otel_layer", &dispatch);
    let _ = provider.shutdown();
    group.finish();

    let mut group = c.benchmark_group("span_sampled_out_1pct");
    let (dispatch, provider) = otel_layer_defaults(ratio());
    tracing_span(&mut group, "tracing_opentelemetry_defaults", &dispatch);
    let _ = provider.shutdown();
    sdk_span(&mut group, "opentelemetry_sdk_direct", ratio());
    ours_variant(
        &mut group,
        "service_telemetry_exported",
        Export::Traces,
        ONE_PERCENT,
    );
    let (dispatch, provider) = direct_layer(ratio());
    tracing_span(&mut group, "prototype_direct_otel_layer", &dispatch);
    let _ = provider.shutdown();
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(4));
    targets = span_lifecycle
}
criterion_main!(benches);
