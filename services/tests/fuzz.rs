//! Fuzzing every RPC of every `eucora.v1` service: proptest builds random
//! well-formed requests from the API's own descriptors (every field maybe
//! set, values drawn to reach validation and the domain transitions: empty,
//! huge, unknown enum numbers, out-of-range timestamps, NaN, ids of things
//! that exist) and random bytes that are mostly not a message at all. No call
//! may answer INTERNAL or UNKNOWN, outlive its deadline, or panic the server,
//! and the server must still be serving at the end.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Backend, Options, TestServer, create, start_server_with};
use eucora::v1 as pb;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost::Message as _;
use prost::bytes::Buf as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, MethodDescriptor,
};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic_health::pb::health_check_response::ServingStatus;

/// Cases per method: random requests, random bytes.
const MESSAGE_CASES: u32 = 64;
const BYTE_CASES: u32 = 16;

/// Panics anywhere in this test process (the server runs in it).
static PANICS: AtomicUsize = AtomicUsize::new(0);
/// Calls answered OK: random requests must reach past validation too.
static ANSWERED_OK: AtomicUsize = AtomicUsize::new(0);

/// Sends and receives bodies as they are, so a test can send any bytes.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// One call of `method` with `body`; a stream counts as answered once it opens.
async fn call(server: &TestServer, method: &MethodDescriptor, body: Vec<u8>) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(server.channel_as(common::ADMIN));
    grpc.ready().await.map_err(|err| tonic::Status::unavailable(err.to_string()))?;
    let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    let path = http::uri::PathAndQuery::try_from(path).expect("method path");
    let request = tonic::Request::new(body);
    if method.is_server_streaming() {
        grpc.server_streaming(request, path, RawCodec).await.map(drop)
    } else {
        grpc.unary(request, path, RawCodec).await.map(drop)
    }
}

/// Strings that reach past the shape checks: names and ids that exist,
/// values the API knows, and the classic troublemakers.
fn interesting_strings(known: &[String]) -> BoxedStrategy<String> {
    let mut fixed: Vec<String> = [
        "",
        " ",
        "firefox",
        "1.0.0",
        "LAB",
        "PILOT",
        "simulator-intune",
        "intune",
        "Europe/Berlin",
        "status = \"DEPLOYING\"",
        "app_name = \"firefox\" AND ring = \"LAB\"",
        "-1",
        "9223372036854775808",
        "../../etc/passwd",
        "'; DROP TABLE deployments; --",
        "\0",
        "\u{202e}gnp.exe",
        "http://127.0.0.1:1/",
        "https://[::1]:0/x",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    fixed.extend(known.iter().cloned());
    prop_oneof![
        4 => proptest::sample::select(fixed),
        2 => "[a-z0-9._-]{1,24}",
        2 => any::<String>(),
        1 => (1usize..70_000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

fn field_value(
    field: &FieldDescriptor,
    strings: &BoxedStrategy<String>,
    depth: u32,
) -> BoxedStrategy<prost_reflect::Value> {
    use prost_reflect::Value;
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else { unreachable!("a map field is a message of entries") };
        let key = entry.map_entry_key_field();
        let value = entry.map_entry_value_field();
        let key =
            single_value(&key, strings, depth).prop_filter_map("map keys are strings or integers", |key| match key {
                Value::String(s) => Some(MapKey::String(s)),
                Value::I32(n) => Some(MapKey::I32(n)),
                Value::I64(n) => Some(MapKey::I64(n)),
                Value::U32(n) => Some(MapKey::U32(n)),
                Value::U64(n) => Some(MapKey::U64(n)),
                Value::Bool(b) => Some(MapKey::Bool(b)),
                _ => None,
            });
        return proptest::collection::hash_map(key, single_value(&value, strings, depth), 0..4)
            .prop_map(Value::Map)
            .boxed();
    }
    if field.is_list() {
        return proptest::collection::vec(single_value(field, strings, depth), 0..4).prop_map(Value::List).boxed();
    }
    single_value(field, strings, depth)
}

fn single_value(
    field: &FieldDescriptor,
    strings: &BoxedStrategy<String>,
    depth: u32,
) -> BoxedStrategy<prost_reflect::Value> {
    use prost_reflect::Value;
    match field.kind() {
        Kind::String => strings.clone().prop_map(Value::String).boxed(),
        Kind::Bytes => proptest::collection::vec(any::<u8>(), 0..64).prop_map(|b| Value::Bytes(b.into())).boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            prop_oneof![-3i32..200, any::<i32>(), Just(i32::MAX), Just(i32::MIN)].prop_map(Value::I32).boxed()
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            prop_oneof![-3i64..200, any::<i64>(), Just(i64::MAX), Just(i64::MIN)].prop_map(Value::I64).boxed()
        }
        Kind::Uint32 | Kind::Fixed32 => prop_oneof![0u32..200, any::<u32>()].prop_map(Value::U32).boxed(),
        Kind::Uint64 | Kind::Fixed64 => prop_oneof![0u64..200, any::<u64>()].prop_map(Value::U64).boxed(),
        Kind::Float => {
            prop_oneof![0f32..1.0, any::<f32>(), Just(f32::NAN), Just(f32::INFINITY)].prop_map(Value::F32).boxed()
        }
        Kind::Double => prop_oneof![0f64..1.0, any::<f64>(), Just(f64::NAN), Just(f64::NEG_INFINITY), Just(-0.5)]
            .prop_map(Value::F64)
            .boxed(),
        Kind::Enum(descriptor) => {
            let known: Vec<i32> = descriptor.values().map(|v| v.number()).collect();
            prop_oneof![4 => proptest::sample::select(known), 1 => any::<i32>()].prop_map(Value::EnumNumber).boxed()
        }
        Kind::Message(descriptor) => message(&descriptor, strings, depth + 1).prop_map(Value::Message).boxed(),
    }
}

/// A random message of type `descriptor`: each field set or not.
fn message(
    descriptor: &MessageDescriptor,
    strings: &BoxedStrategy<String>,
    depth: u32,
) -> BoxedStrategy<DynamicMessage> {
    let empty = DynamicMessage::new(descriptor.clone());
    if depth > 4 {
        return Just(empty).boxed();
    }
    let fields: Vec<_> = descriptor
        .fields()
        .map(|field| {
            let value = field_value(&field, strings, depth);
            proptest::option::weighted(0.6, value).prop_map(move |value| value.map(|value| (field.clone(), value)))
        })
        .collect();
    fields
        .prop_map(move |values| {
            let mut message = empty.clone();
            for (field, value) in values.into_iter().flatten() {
                message.set_field(&field, value);
            }
            message
        })
        .boxed()
}

/// What the server may answer: anything but INTERNAL and UNKNOWN, within the deadline.
async fn check(server: &TestServer, method: &MethodDescriptor, body: Vec<u8>) -> Result<(), TestCaseError> {
    let answer = tokio::time::timeout(Duration::from_secs(10), call(server, method, body)).await;
    let Ok(answer) = answer else {
        return Err(TestCaseError::fail(format!("{} hung past its 5 s deadline", method.full_name())));
    };
    if answer.is_ok() {
        ANSWERED_OK.fetch_add(1, Ordering::SeqCst);
    }
    if let Err(status) = answer {
        prop_assert!(
            !matches!(status.code(), Code::Internal | Code::Unknown),
            "{} answered {:?}: {}",
            method.full_name(),
            status.code(),
            status.message()
        );
    }
    prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0, "the server panicked");
    Ok(())
}

/// Things that exist, so that random requests reach past "not found".
async fn seed(server: &TestServer) -> Vec<String> {
    let mut client = server.deployments();
    let created = create(&mut client, "fuzz-created", "firefox", 10).await;
    let started = common::started(&mut client, "fuzz-started").await;
    let risky = create(&mut client, "fuzz-risky", "chrome", 90).await;
    [created.id, started.id, risky.id, "fuzz-created".into(), common::evidence_pack_id()].into()
}

#[test]
fn every_rpc_survives_random_requests_and_random_bytes() {
    std::panic::set_hook(Box::new(|info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        eprintln!("panic: {info}");
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let options = Options { default_deadline: Duration::from_secs(5), ..Options::default() };
    let server = runtime.block_on(start_server_with(Backend::Sqlite, options));
    let known = runtime.block_on(seed(&server));
    let strings = interesting_strings(&known);

    let pool = DescriptorPool::decode(eucora::FILE_DESCRIPTOR_SET).expect("the API's descriptor set");
    let methods: Vec<_> = pool
        .services()
        .filter(|s| s.package_name() == "eucora.v1")
        .flat_map(|s| s.methods().collect::<Vec<_>>())
        .collect();
    assert!(methods.len() >= 40, "every eucora.v1 method: {}", methods.len());

    for method in &methods {
        let config = |cases| Config { cases, failure_persistence: None, ..Config::default() };
        let requests = message(&method.input(), &strings, 0);
        TestRunner::new(config(MESSAGE_CASES))
            .run(&requests, |request| runtime.block_on(check(&server, method, request.encode_to_vec())))
            .unwrap_or_else(|failure| panic!("{}: {failure}", method.full_name()));
        let bytes = proptest::collection::vec(any::<u8>(), 0..128);
        TestRunner::new(config(BYTE_CASES))
            .run(&bytes, |body| runtime.block_on(check(&server, method, body)))
            .unwrap_or_else(|failure| panic!("{} (random bytes): {failure}", method.full_name()));
    }

    let calls = methods.len() * (MESSAGE_CASES + BYTE_CASES) as usize;
    let ok = ANSWERED_OK.load(Ordering::SeqCst);
    eprintln!("{ok} of {calls} random calls answered OK");
    assert!(ok * 20 > calls, "only {ok} of {calls} random calls got past validation: the requests are too random");
    runtime.block_on(async {
        assert_eq!(common::health_of(&server).await, ServingStatus::Serving, "still serving after the fuzzing");
        let mut client = server.deployments();
        client.list_deployments(pb::ListDeploymentsRequest::default()).await.expect("still answering");
        server.stop().await;
    });
}
