//! A span's whole life: create with two fields, enter, exit, close, behind a batch span
//! processor with a no-op exporter. Same process, same group, for:
//!
//! - `tracing-opentelemetry` with its default settings, the baseline;
//! - the OpenTelemetry SDK's API used directly (no `tracing`), the floor for OTel spans;
//! - this crate with traces exported, and with export off (spans still minted for the ids).
//!
//! - this crate with its opt-in direct span layer (`TelemetryBuilder::direct_spans`), exported
//!   and with export off.
//!
//! The second group is the same with a parent-based 1 % ratio sampler: 99 % of these root
//! spans are dropped, the common case for a busy service. The third times a child span
//! inside a request whose remote parent was not sampled (all dropped), with this crate as
//! configured by default, with `skip_spans_under_unsampled_parents` and with `direct_spans`.
//!
//! Every variant that exports has a queue of 65 536 and is timed in stretches of at most half
//! of it, with the exporter caught up (untimed) in between; each prints the spans it created
//! and exported, and a variant that claims the kept path fails the run if it dropped any
//! (a drop at a full queue is far cheaper than an export and would flatter the variant). The
//! sampled-out group checks that about 1 % was exported.
//!
//! The no-op exporter frees each batch at once, so the export thread's frees contend with this
//! thread's allocations more than behind a real exporter, which spends its time encoding: a
//! change that only moves allocations between the threads can pay here and cost against the
//! collector. Confirm such a change with `export_throughput` (`benches/export.rs`). With
//! `BENCH_UNTIMED_FREES=1` the exported batches are freed between timed stretches instead, the
//! other end of that range; report both.
//!
//! Run with `cargo bench --bench span`.

mod common;

use std::hint::black_box;

use common::{Export, Tally, bench_counted, ours_with};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::Sampler;
use service_telemetry::TelemetryBuilder;
use tracing::dispatcher::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

/// Where the timed span opens.
#[derive(Clone, Copy)]
enum Shape {
    /// A root span.
    Root,
    /// A child of an entered span whose remote parent was not sampled, as inside a request
    /// that arrived with `traceparent` flags `00`.
    ChildOfNotSampled,
}

/// A remote parent the sampler must follow: not sampled.
fn not_sampled_remote() -> Context {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128),
        SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
        TraceFlags::default(),
        true,
        TraceState::default(),
    ))
}

/// Times the span's life under `dispatch`, letting the exporter catch up (`settle`) untimed
/// between stretches; returns how many spans were created.
fn tracing_span(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    dispatch: &Dispatch,
    settle: &dyn Fn(),
    shape: Shape,
) -> u64 {
    tracing::dispatcher::with_default(dispatch, || {
        // The remote parent is current while the request span opens, which every layer
        // measured here takes as its parent.
        let request = matches!(shape, Shape::ChildOfNotSampled).then(|| {
            let _remote = not_sampled_remote().attach();
            tracing::info_span!("incoming")
        });
        let _entered = request.as_ref().map(tracing::Span::enter);
        bench_counted(group, name, settle, || {
            let span = tracing::info_span!(
                "request",
                method = black_box("GET"),
                route = black_box("/orders/{id}")
            );
            let entered = span.enter();
            drop(black_box(entered));
            drop(span);
        })
    })
}

fn sdk_span<'a>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &'a str,
    sampler: Sampler,
    shape: Shape,
) -> Tally<'a> {
    let (provider, exported) = common::sdk_provider(sampler);
    let tracer = provider.tracer("bench");
    let settle = || {
        let _ = provider.force_flush();
    };
    let parent = match shape {
        Shape::Root => Context::new(),
        Shape::ChildOfNotSampled => not_sampled_remote(),
    };
    let created = bench_counted(group, name, &settle, || {
        let span = tracer
            .span_builder("request")
            .with_attributes([
                KeyValue::new("method", black_box("GET")),
                KeyValue::new("route", black_box("/orders/{id}")),
            ])
            .start_with_context(&tracer, &parent);
        let cx = Context::current_with_span(span);
        let guard = cx.clone().attach();
        drop(black_box(guard));
        cx.span().end();
    });
    let tally = Tally::sdk_spans(name, created, &provider, &exported);
    let _ = provider.shutdown();
    tally
}

/// A `tracing` subscriber over an SDK provider: the span layer `layer` builds, timed, with
/// what reached the exporter.
fn over_sdk<'a, L>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &'a str,
    sampler: Sampler,
    shape: Shape,
    layer: impl FnOnce(opentelemetry_sdk::trace::Tracer) -> L,
) -> Tally<'a>
where
    L: tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync + 'static,
{
    let (provider, exported) = common::sdk_provider(sampler);
    let dispatch =
        Dispatch::new(tracing_subscriber::registry().with(layer(provider.tracer("bench"))));
    let settle = || {
        let _ = provider.force_flush();
    };
    let created = tracing_span(group, name, &dispatch, &settle, shape);
    let tally = Tally::sdk_spans(name, created, &provider, &exported);
    let _ = provider.shutdown();
    tally
}

fn otel_layer_defaults<'a>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &'a str,
    sampler: Sampler,
    shape: Shape,
) -> Tally<'a> {
    over_sdk(group, name, sampler, shape, |tracer| {
        tracing_opentelemetry::layer().with_tracer(tracer)
    })
}

/// tracing-opentelemetry's layer with the options this crate sets: no thread attributes, no
/// busy/idle timing, no target attribute.
fn configured_like_this_crate(
    tracer: opentelemetry_sdk::trace::Tracer,
) -> tracing_opentelemetry::OpenTelemetryLayer<
    tracing_subscriber::Registry,
    opentelemetry_sdk::trace::Tracer,
> {
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_target(false)
}

fn ours_variant<'a>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &'a str,
    export: Export,
    env: &'static [(&'static str, &'static str)],
    shape: Shape,
    configure: fn(TelemetryBuilder) -> TelemetryBuilder,
) -> Tally<'a> {
    let scoped = ours_with(export, env, configure);
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let settle = || {
        let _ = scoped.telemetry().flush();
    };
    let created = tracing_span(group, name, &dispatch, &settle, shape);
    Tally::ours_spans(name, created, &scoped)
}

fn ratio() -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(0.01)))
}

const ONE_PERCENT: &[(&str, &str)] = &[
    ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
    ("OTEL_TRACES_SAMPLER_ARG", "0.01"),
];

/// A sampled-out variant keeps about 1 %: print the share, and fail if it is far off (the
/// kept 1 % dropped at a full queue would look like the sampler at work).
fn check_one_percent(tally: &Tally<'_>) {
    tally.check(false);
    if tally.created == 0 {
        return; // not selected by the command line's filter
    }
    let share = tally.exported as f64 / tally.created.max(1) as f64;
    eprintln!("{}: {:.3} % exported", tally.variant, share * 100.0);
    assert!(
        (0.005..0.02).contains(&share),
        "{}: {:.3} % exported, expected about 1 %",
        tally.variant,
        share * 100.0
    );
}

fn span_lifecycle(c: &mut Criterion) {
    use Shape::{ChildOfNotSampled, Root};
    let always = || Sampler::ParentBased(Box::new(Sampler::AlwaysOn));
    let as_is = |builder| builder;
    let mut group = c.benchmark_group("span_lifecycle");
    otel_layer_defaults(&mut group, "tracing_opentelemetry_defaults", always(), Root).check(true);
    // What the layer's code-location attributes and the export-relevant options cost: the
    // crate keeps the location (code.file.path, code.line.number are exported) and already
    // turns off the target attribute, threads and inactivity tracking.
    over_sdk(
        &mut group,
        "tracing_opentelemetry_as_this_crate_configures_it",
        always(),
        Root,
        configured_like_this_crate,
    )
    .check(true);
    over_sdk(
        &mut group,
        "tracing_opentelemetry_configured_behind_a_per_layer_filter",
        always(),
        Root,
        |tracer| {
            use tracing_subscriber::Layer as _;
            configured_like_this_crate(tracer)
                .with_filter(tracing_subscriber::filter::filter_fn(|meta| meta.is_span()))
        },
    )
    .check(true);
    over_sdk(
        &mut group,
        "tracing_opentelemetry_also_without_location",
        always(),
        Root,
        |tracer| configured_like_this_crate(tracer).with_location(false),
    )
    .check(true);
    sdk_span(&mut group, "opentelemetry_sdk_direct", always(), Root).check(true);
    ours_variant(
        &mut group,
        "service_telemetry_exported",
        Export::Traces,
        &[],
        Root,
        as_is,
    )
    .check(true);
    // Nothing is exported by design: the spans only mint the ids of the log lines.
    ours_variant(
        &mut group,
        "service_telemetry_export_off",
        Export::Off,
        &[],
        Root,
        as_is,
    )
    .check(false);
    ours_variant(
        &mut group,
        "service_telemetry_direct_spans",
        Export::Traces,
        &[],
        Root,
        TelemetryBuilder::direct_spans,
    )
    .check(true);
    ours_variant(
        &mut group,
        "service_telemetry_direct_spans_export_off",
        Export::Off,
        &[],
        Root,
        TelemetryBuilder::direct_spans,
    )
    .check(false);
    group.finish();

    let mut group = c.benchmark_group("span_sampled_out_1pct");
    check_one_percent(&otel_layer_defaults(
        &mut group,
        "tracing_opentelemetry_defaults",
        ratio(),
        Root,
    ));
    check_one_percent(&sdk_span(
        &mut group,
        "opentelemetry_sdk_direct",
        ratio(),
        Root,
    ));
    check_one_percent(&ours_variant(
        &mut group,
        "service_telemetry_exported",
        Export::Traces,
        ONE_PERCENT,
        Root,
        as_is,
    ));
    check_one_percent(&ours_variant(
        &mut group,
        "service_telemetry_skipping_unsampled_children",
        Export::Traces,
        ONE_PERCENT,
        Root,
        TelemetryBuilder::skip_spans_under_unsampled_parents,
    ));
    check_one_percent(&ours_variant(
        &mut group,
        "service_telemetry_direct_spans",
        Export::Traces,
        ONE_PERCENT,
        Root,
        TelemetryBuilder::direct_spans,
    ));
    group.finish();

    // Children of a request whose remote parent was not sampled: every one is dropped.
    let mut group = c.benchmark_group("span_child_of_not_sampled");
    check_none_exported(&otel_layer_defaults(
        &mut group,
        "tracing_opentelemetry_defaults",
        ratio(),
        ChildOfNotSampled,
    ));
    check_none_exported(&sdk_span(
        &mut group,
        "opentelemetry_sdk_direct",
        ratio(),
        ChildOfNotSampled,
    ));
    check_none_exported(&ours_variant(
        &mut group,
        "service_telemetry_exported",
        Export::Traces,
        ONE_PERCENT,
        ChildOfNotSampled,
        as_is,
    ));
    check_none_exported(&ours_variant(
        &mut group,
        "service_telemetry_skipping_unsampled_children",
        Export::Traces,
        ONE_PERCENT,
        ChildOfNotSampled,
        TelemetryBuilder::skip_spans_under_unsampled_parents,
    ));
    check_none_exported(&ours_variant(
        &mut group,
        "service_telemetry_direct_spans",
        Export::Traces,
        ONE_PERCENT,
        ChildOfNotSampled,
        TelemetryBuilder::direct_spans,
    ));
    group.finish();
}

/// Children of a not-sampled parent are all dropped; one that reached the exporter means the
/// variant did not time the sampled-out path.
fn check_none_exported(tally: &Tally<'_>) {
    tally.check(false);
    assert_eq!(
        tally.exported, 0,
        "{}: {} spans exported under a not-sampled parent",
        tally.variant, tally.exported
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(4));
    targets = span_lifecycle
}
criterion_main!(benches);
