//! A real OTLP/HTTP receiver: accepts protobuf `POST /v1/traces` and `/v1/metrics`, decodes
//! them and keeps the span names, metric names and attributes for assertions.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;

/// One received span.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub name: String,
    pub service_name: String,
    pub attributes: HashMap<String, String>,
}

/// One received metric data point (sum, gauge or histogram).
#[derive(Debug, Clone)]
pub struct ReceivedPoint {
    pub metric: String,
    pub attributes: HashMap<String, String>,
    /// The sum's or gauge's value, or the histogram's count.
    pub value: f64,
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    points: Vec<ReceivedPoint>,
    requests: usize,
}

pub struct OtlpReceiver {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

async fn traces(
    State(received): State<Arc<Mutex<Received>>>,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut received = received.lock().unwrap();
    received.requests += 1;
    for resource in request.resource_spans {
        let resource_attributes = attributes(
            resource
                .resource
                .as_ref()
                .map(|r| &r.attributes[..])
                .unwrap_or(&[]),
        );
        let service_name = resource_attributes
            .get("service.name")
            .cloned()
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                received.spans.push(ReceivedSpan {
                    name: span.name,
                    service_name: service_name.clone(),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
    (StatusCode::OK, Vec::new())
}

async fn metrics(
    State(received): State<Arc<Mutex<Received>>>,
    body: Bytes,
) -> (StatusCode, Vec<u8>) {
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
    let Ok(request) = ExportMetricsServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut received = received.lock().unwrap();
    received.requests += 1;
    let number = |v: Option<Value>| match v {
        Some(Value::AsDouble(d)) => d,
        Some(Value::AsInt(i)) => i as f64,
        None => 0.0,
    };
    for resource in request.resource_metrics {
        for scope in resource.scope_metrics {
            for metric in scope.metrics {
                let points: Vec<(HashMap<String, String>, f64)> = match metric.data {
                    Some(Data::Sum(sum)) => sum
                        .data_points
                        .iter()
                        .map(|p| (attributes(&p.attributes), number(p.value)))
                        .collect(),
                    Some(Data::Gauge(g)) => g
                        .data_points
                        .iter()
                        .map(|p| (attributes(&p.attributes), number(p.value)))
                        .collect(),
                    Some(Data::Histogram(h)) => h
                        .data_points
                        .iter()
                        .map(|p| (attributes(&p.attributes), p.count as f64))
                        .collect(),
                    _ => Vec::new(),
                };
                for (attributes, value) in points {
                    received.points.push(ReceivedPoint {
                        metric: metric.name.clone(),
                        attributes,
                        value,
                    });
                }
            }
        }
    }
    (StatusCode::OK, Vec::new())
}

impl OtlpReceiver {
    pub async fn start() -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let router = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind OTLP receiver");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { addr, received }
    }

    /// For `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.lock().unwrap().spans.clone()
    }

    pub fn points(&self) -> Vec<ReceivedPoint> {
        self.received.lock().unwrap().points.clone()
    }

    /// Export requests received so far (traces and metrics).
    pub fn requests(&self) -> usize {
        self.received.lock().unwrap().requests
    }
}
