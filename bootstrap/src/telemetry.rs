//! Logging and tracing. Logs: JSON lines in production, readable text in development, filtered by
//! `RUST_LOG`. Traces: with an OTLP endpoint configured, spans are exported over OTLP/HTTP
//! (protobuf) by a batch span processor, and W3C trace context is read from and written to
//! requests and Kafka messages. Without one, no span leaves the process.

use crate::config::{ConfigError, LogFormat};
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use std::collections::HashMap;
use tracing::Subscriber;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The service name when `OTEL_SERVICE_NAME` is unset.
pub const DEFAULT_SERVICE_NAME: &str = "video-ranking-service";

/// Trace export settings, from the standard `OTEL_*` variables.
#[derive(Clone, Debug, PartialEq)]
pub struct TracingConfig {
    /// Where spans are POSTed (`.../v1/traces`); `None` disables tracing.
    pub endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Which traces are recorded and exported.
    pub sampler: SamplerConfig,
}

/// `OTEL_TRACES_SAMPLER` and its `OTEL_TRACES_SAMPLER_ARG`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerConfig {
    AlwaysOn,
    AlwaysOff,
    /// Keeps this fraction of traces, by trace id.
    Ratio(f64),
    /// The caller's decision when a request carries one, else the inner sampler's.
    ParentBased(RootSampler),
}

/// The sampler of root spans under a parent-based sampler.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

impl SamplerConfig {
    fn sdk(self) -> Sampler {
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::Ratio(r) => Sampler::TraceIdRatioBased(r),
            Self::ParentBased(root) => Sampler::ParentBased(Box::new(match root {
                RootSampler::AlwaysOn => Sampler::AlwaysOn,
                RootSampler::AlwaysOff => Sampler::AlwaysOff,
                RootSampler::Ratio(r) => Sampler::TraceIdRatioBased(r),
            })),
        }
    }
}

impl TracingConfig {
    /// Reads `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL`, `OTEL_SERVICE_NAME`,
    /// `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`. The batch processor reads its own
    /// `OTEL_BSP_*` variables.
    pub fn from_vars(map: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let opt = |var: &str| {
            map.get(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let error = |var: &'static str, message: String| ConfigError { var, message };

        let disabled = match opt("OTEL_SDK_DISABLED").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(error(
                    "OTEL_SDK_DISABLED",
                    format!("invalid value {other:?}: expected true or false"),
                ));
            }
        };
        let exporter_off = match opt("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => false,
            Some("none") => true,
            Some(other) => {
                return Err(error(
                    "OTEL_TRACES_EXPORTER",
                    format!("invalid value {other:?}: expected otlp or none"),
                ));
            }
        };
        // The signal-specific variable is the URL itself; the general one is a base URL.
        let endpoint = match (
            opt("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            opt("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _) => Some(("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url)),
            (None, Some(base)) => Some((
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim_end_matches('/')),
            )),
            (None, None) => None,
        };
        if let Some((var, url)) = &endpoint {
            if url.starts_with("https://") {
                return Err(error(
                    var,
                    format!(
                        "{url}: this build exports over plain http only (send to a local collector)"
                    ),
                ));
            }
            if !url.starts_with("http://") {
                return Err(error(var, format!("{url}: expected an http:// URL")));
            }
        }
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            match opt(var).as_deref() {
                None | Some("http/protobuf") => {}
                Some(other) => {
                    return Err(error(
                        var,
                        format!("{other:?} is not supported by this build: expected http/protobuf"),
                    ));
                }
            }
        }

        let ratio = |default: f64| -> Result<f64, ConfigError> {
            match opt("OTEL_TRACES_SAMPLER_ARG") {
                None => Ok(default),
                Some(raw) => raw
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        error(
                            "OTEL_TRACES_SAMPLER_ARG",
                            format!("invalid value {raw:?}: expected a ratio from 0 to 1"),
                        )
                    }),
            }
        };
        let sampler = match opt("OTEL_TRACES_SAMPLER").as_deref() {
            None | Some("parentbased_always_on") => {
                SamplerConfig::ParentBased(RootSampler::AlwaysOn)
            }
            Some("parentbased_always_off") => SamplerConfig::ParentBased(RootSampler::AlwaysOff),
            Some("parentbased_traceidratio") => {
                SamplerConfig::ParentBased(RootSampler::Ratio(ratio(1.0)?))
            }
            Some("always_on") => SamplerConfig::AlwaysOn,
            Some("always_off") => SamplerConfig::AlwaysOff,
            Some("traceidratio") => SamplerConfig::Ratio(ratio(1.0)?),
            Some(other) => {
                return Err(error(
                    "OTEL_TRACES_SAMPLER",
                    format!(
                        "invalid value {other:?}: expected always_on, always_off, traceidratio, \
                         parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
                    ),
                ));
            }
        };

        Ok(Self {
            endpoint: endpoint
                .filter(|_| !disabled && !exporter_off)
                .map(|(_, url)| url),
            service_name: opt("OTEL_SERVICE_NAME").unwrap_or_else(|| DEFAULT_SERVICE_NAME.into()),
            sampler,
        })
    }
}

/// Keeps the tracer provider until shutdown.
#[derive(Debug)]
#[must_use = "call shutdown() before exiting, or the last spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter. Call it outside the async runtime:
    /// the exporter's HTTP client blocks.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("tracing: could not export the last spans: {e}");
        }
    }
}

/// Installs the global subscriber: the log layer, and the OpenTelemetry layer when an endpoint is
/// configured. Call it outside the async runtime.
pub fn init(format: LogFormat, tracing: &TracingConfig, environment: &str) -> Telemetry {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let (otel, provider) = match tracing
        .endpoint
        .as_deref()
        .map(|url| provider(url, tracing, environment))
    {
        Some(Ok(provider)) => {
            opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
            let layer = tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("video-ranking-service"))
                // RUST_LOG chooses log lines; exported spans do not depend on it.
                .with_filter(LevelFilter::INFO);
            (Some(layer), Some(provider))
        }
        Some(Err(e)) => {
            eprintln!("tracing: exporter not started: {e}");
            (None, None)
        }
        None => (None, None),
    };
    // A second initialisation (tests) is harmless: the first subscriber stays.
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(log_layer(format).with_filter(filter))
        .try_init();
    Telemetry { provider }
}

fn provider(
    url: &str,
    config: &TracingConfig,
    environment: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .build()?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("deployment.environment.name", environment.to_owned()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(config.sampler.sdk())
        .with_resource(resource)
        .build())
}

/// Log lines: JSON (one object per line, with the fields of every enclosing span) or text.
fn log_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer().with_target(false);
    match format {
        LogFormat::Json => Box::new(
            layer
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true),
        ),
        LogFormat::Text => Box::new(layer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<TracingConfig, ConfigError> {
        TracingConfig::from_vars(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn no_endpoint_no_export() {
        let c = config(&[]).expect("defaults are valid");
        assert_eq!(c.endpoint, None);
        assert_eq!(c.service_name, "video-ranking-service");
        assert_eq!(c.sampler, SamplerConfig::ParentBased(RootSampler::AlwaysOn));
    }

    #[test]
    fn endpoints_follow_the_otlp_rules() {
        let base = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(
            base.expect("valid").endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let both = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:9999/custom",
            ),
        ]);
        assert_eq!(
            both.expect("valid").endpoint.as_deref(),
            Some("http://traces:9999/custom")
        );
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            let c = config(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                off,
            ]);
            assert_eq!(c.expect("valid").endpoint, None, "{off:?}");
        }
    }

    #[test]
    fn samplers_and_service_name() {
        let c = config(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_SERVICE_NAME", "ranking-canary"),
        ])
        .expect("valid");
        assert_eq!(
            c.sampler,
            SamplerConfig::ParentBased(RootSampler::Ratio(0.25))
        );
        assert_eq!(c.service_name, "ranking-canary");
        let c = config(&[("OTEL_TRACES_SAMPLER", "traceidratio")]).expect("valid");
        assert_eq!(c.sampler, SamplerConfig::Ratio(1.0));
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (var, value) in [
            ("OTEL_SDK_DISABLED", "yes"),
            ("OTEL_TRACES_EXPORTER", "jaeger"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
        ] {
            let err = config(&[(var, value)]).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.starts_with(var)),
                "{var}={value}: {err:?}"
            );
        }
        let err = config(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
        ])
        .err()
        .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.starts_with("OTEL_TRACES_SAMPLER_ARG")));
    }
}
