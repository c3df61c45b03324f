//! Function handles across the facade: static registration, binding
//! checks, kinds, serialization, and a handle executed by another process.

use std::num::ParseIntError;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};
use suitkaise::prelude::*;
use suitkaise::{FunctionKind, Segment};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Size {
    w: u32,
    h: u32,
}

#[suitkaise::function]
fn resize(size: Size, scale: u32) -> Size {
    Size {
        w: size.w * scale,
        h: size.h * scale,
    }
}

#[suitkaise::function]
fn parse_port(text: String) -> Result<u16, ParseIntError> {
    text.trim().parse()
}

#[suitkaise::generator]
fn count_to(n: u32) -> impl Iterator<Item = u32> {
    1..=n
}

#[suitkaise::function]
async fn double_later(x: u64) -> u64 {
    std::future::ready(()).await;
    x * 2
}

static FIRST_CALL_RUNS: AtomicU32 = AtomicU32::new(0);

#[suitkaise::function(on_first_call, name = "tests_registered_on_first_call")]
fn registered_on_first_call(x: u32) -> u32 {
    FIRST_CALL_RUNS.fetch_add(1, Ordering::SeqCst);
    x + 1
}

/// A value whose serialization always fails, to check error paths.
#[derive(Clone, Debug, Deserialize)]
struct Unserializable(#[allow(dead_code)] u32);

impl Serialize for Unserializable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("this value refuses to serialize"))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Canvas {
    w: Unserializable,
    h: u32,
}

#[suitkaise::function]
fn draw(size: Canvas) -> u32 {
    size.h
}

#[test]
fn statically_registered_function_executes_by_name() {
    let f = SkFunction::builder("resize")
        .arg("size", Size { w: 2, h: 3 })
        .arg("scale", 10u32)
        .build()
        .unwrap();
    assert_eq!(f.execute::<Size>().unwrap(), Size { w: 20, h: 30 });
    assert_eq!(f.kind().unwrap(), FunctionKind::Plain);
}

#[test]
fn unknown_parameter_fails_at_bind_time_naming_function_and_parameter() {
    let err = SkFunction::builder("resize")
        .arg("sise", Size { w: 1, h: 1 })
        .build()
        .unwrap_err();
    assert!(
        matches!(err, FunctionError::UnknownParameter { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("\"resize\"") && msg.contains("\"sise\""),
        "{msg}"
    );
    assert!(
        msg.contains("size, scale"),
        "lists the real parameters: {msg}"
    );
}

#[test]
fn wrong_type_fails_at_bind_time_naming_function_parameter_and_types() {
    let err = SkFunction::builder("resize")
        .arg("scale", 10i64)
        .build()
        .unwrap_err();
    assert!(matches!(err, FunctionError::ArgumentType { .. }), "{err:?}");
    let msg = err.to_string();
    for needle in ["\"resize\"", "\"scale\"", "u32", "i64"] {
        assert!(msg.contains(needle), "{needle} missing from: {msg}");
    }
}

#[test]
fn unserializable_argument_fails_at_bind_time_with_its_path() {
    let err = SkFunction::builder("draw")
        .arg(
            "size",
            Canvas {
                w: Unserializable(1),
                h: 2,
            },
        )
        .build()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("function \"draw\" > arg \"size\" > field \"w\""),
        "path missing from: {msg}"
    );
    let FunctionError::Cereal(cereal) = err else {
        panic!("expected a serialization error")
    };
    let path = cereal.path().expect("the error carries a path");
    assert_eq!(
        path.segments().last(),
        Some(&Segment::Field("w".to_owned()))
    );
}

#[test]
fn calling_an_unregistered_name_is_a_clear_error() {
    let err = SkFunction::builder("no_such_function").build().unwrap_err();
    assert!(matches!(err, FunctionError::NotRegistered { .. }));
    assert_eq!(
        err.to_string(),
        "function \"no_such_function\" is not registered in this process"
    );

    // A decoded handle whose name this process does not know fails on use.
    let forged = handle_from_wire("missing_elsewhere").expect("decodes");
    let err = forged.execute::<u32>().unwrap_err();
    assert!(
        err.to_string()
            .contains("\"missing_elsewhere\" is not registered")
    );
}

/// Builds a handle from its serialized fields without any registry check,
/// the way a receiving process sees one.
fn handle_from_wire(name: &str) -> Result<SkFunction, suitkaise::CerealError> {
    #[derive(Serialize)]
    struct Wire<'a> {
        name: &'a str,
        args: Args,
        modifiers: suitkaise::Modifiers,
    }
    let bytes = Internal::encode(&Wire {
        name,
        args: Args::new(),
        modifiers: Default::default(),
    })?;
    Internal::decode(&bytes)
}

#[test]
fn fallible_function_errors_keep_their_source() {
    let ok = SkFunction::builder("parse_port")
        .arg("text", " 8080 ".to_string())
        .build()
        .unwrap();
    assert_eq!(ok.execute::<u16>().unwrap(), 8080);

    let bad = SkFunction::builder("parse_port")
        .arg("text", "eighty".to_string())
        .build()
        .unwrap();
    let err = bad.execute::<u16>().unwrap_err();
    assert!(matches!(err, FunctionError::Failed { .. }));
    let source = std::error::Error::source(&err).expect("keeps the user error");
    assert!(source.is::<ParseIntError>());
}

#[test]
fn generator_streams_and_collects() {
    let f = SkFunction::builder("count_to")
        .arg("n", 4u32)
        .build()
        .unwrap();
    assert_eq!(f.kind().unwrap(), FunctionKind::Generator);
    let streamed: Vec<u32> = f.stream::<u32>().unwrap().map(Result::unwrap).collect();
    assert_eq!(streamed, [1, 2, 3, 4]);
    assert_eq!(f.execute::<Vec<u32>>().unwrap(), [1, 2, 3, 4]);
}

#[test]
fn async_function_executes_blocking_and_as_a_future() {
    let f = SkFunction::builder("double_later")
        .arg("x", 21u64)
        .build()
        .unwrap();
    assert_eq!(f.kind().unwrap(), FunctionKind::Async);
    assert_eq!(f.execute::<u64>().unwrap(), 42);
    assert_eq!(pollster::block_on(f.execute_async::<u64>()).unwrap(), 42);
}

#[test]
fn streaming_a_plain_function_is_a_kind_error() {
    let f = SkFunction::builder("parse_port")
        .arg("text", "1".to_string())
        .build()
        .unwrap();
    let err = f.stream_values().err().expect("not a generator");
    assert_eq!(
        err.to_string(),
        "function \"parse_port\" is a plain function and cannot be streamed"
    );
}

#[test]
fn on_first_call_registers_when_first_called() {
    // Before the first direct call, the name is unknown.
    let before = SkFunction::builder("tests_registered_on_first_call").build();
    assert!(matches!(before, Err(FunctionError::NotRegistered { .. })));
    assert_eq!(registered_on_first_call(1), 2);
    let f = SkFunction::builder("tests_registered_on_first_call")
        .arg("x", 41u32)
        .build()
        .unwrap();
    assert_eq!(f.execute::<u32>().unwrap(), 42);
    assert_eq!(FIRST_CALL_RUNS.load(Ordering::SeqCst), 2);
}

#[test]
fn several_instances_of_one_function_with_different_arguments() {
    SkFunction::builder("resize")
        .arg("scale", 2u32)
        .register_as("tests_double_size")
        .unwrap();
    SkFunction::builder("resize")
        .arg("scale", 3u32)
        .register_as("tests_triple_size")
        .unwrap();
    let size = Args::new().with("size", &Size { w: 1, h: 2 }).unwrap();
    let double = SkFunction::get("tests_double_size").unwrap();
    let triple = SkFunction::get("tests_triple_size").unwrap();
    assert_eq!(
        double.execute_with::<Size>(&size).unwrap(),
        Size { w: 2, h: 4 }
    );
    assert_eq!(
        triple.execute_with::<Size>(&size).unwrap(),
        Size { w: 3, h: 6 }
    );

    let taken = SkFunction::builder("resize")
        .arg("scale", 4u32)
        .register_as("tests_double_size")
        .unwrap_err();
    assert!(
        taken
            .to_string()
            .contains("\"tests_double_size\" is already registered")
    );

    let out: Size = SkFunction::builder("resize")
        .arg("scale", 5u32)
        .arg("size", Size { w: 1, h: 1 })
        .register_and_execute("tests_quintuple_unit")
        .unwrap();
    assert_eq!(out, Size { w: 5, h: 5 });
    assert!(SkFunction::get("tests_quintuple_unit").is_ok());
}

#[test]
fn lambda_refuses_to_serialize_naming_itself() {
    let lambda = SkLambda::new("local_counter", || 1u8);
    assert_eq!(lambda.execute::<u8>().unwrap(), 1);
    let err = External::encode(&lambda).unwrap_err();
    let text = suitkaise::error_chain(&err);
    assert!(
        text.contains("\"local_counter\" is a local closure"),
        "{text}"
    );
    let any: AnyFunction = lambda.into();
    assert!(any.is_local());
    let err = any.to_sendable().unwrap_err();
    assert!(matches!(err, FunctionError::LocalOnly { ref name } if name == "local_counter"));
}

#[test]
fn any_function_accepts_handles_lambdas_and_closures() {
    fn run(f: impl Into<AnyFunction>) -> u32 {
        f.into().execute::<u32>().unwrap()
    }
    let handle = SkFunction::builder("registered_on_first_call_free_name_check").build();
    assert!(handle.is_err());
    assert_eq!(run(|| 5u32), 5);
    assert_eq!(run(SkLambda::new("seven", || 7u32)), 7);
    let h = SkFunction::builder("count_to")
        .arg("n", 3u32)
        .build()
        .unwrap();
    let any: AnyFunction = h.into();
    assert_eq!(any.execute::<Vec<u32>>().unwrap(), [1, 2, 3]);
    let bytes = Internal::encode(&any).unwrap();
    let back: AnyFunction = Internal::decode(&bytes).unwrap();
    assert_eq!(back.name(), "count_to");
}

#[test]
fn modifiers_travel_with_the_handle() {
    let f = SkFunction::builder("parse_port")
        .arg("text", "9".to_string())
        .build()
        .unwrap()
        .retry(RetryPolicy::fixed(Duration::from_millis(1)))
        .timeout(Duration::from_secs(5))
        .rate_limit(1000.0);
    let back: SkFunction = External::decode(&External::encode(&f).unwrap()).unwrap();
    assert_eq!(back.modifiers(), f.modifiers());
    assert_eq!(back.execute::<u16>().unwrap(), 9);
}

const HANDLE_FILE_VAR: &str = "SK_TEST_HANDLE_FILE";

/// A handle encoded with the external format, written to a file, decoded
/// and executed by a separate process of this test binary — which knows
/// `resize` only through static registration — gives the same result.
#[test]
fn handle_decoded_in_another_process_gives_the_same_result() {
    sk_testkit::guarded(|| {
        let f = SkFunction::builder("resize")
            .arg("size", Size { w: 7, h: 9 })
            .arg("scale", 3u32)
            .build()
            .unwrap();
        let expected = f.execute::<Size>().unwrap();
        let dir = std::env::temp_dir().join(format!("sk-handle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("handle.skce");
        std::fs::write(&file, External::encode(&f).unwrap()).unwrap();

        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_executes_handle_from_file",
                "--include-ignored",
            ])
            .args(["--nocapture", "--test-threads=1"])
            .env(HANDLE_FILE_VAR, &file)
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            // libtest prints a test's output after `test <name> ... `.
            .find_map(|l| l.split_once("SK-RESULT ").map(|(_, rest)| rest))
            .expect("the child printed its result");
        let (pid, size) = line.split_once(' ').unwrap();
        assert_ne!(
            pid.parse::<u32>().unwrap(),
            std::process::id(),
            "ran in another process"
        );
        assert_eq!(size, format!("{}x{}", expected.w, expected.h));
    })
}

#[test]
#[ignore = "run as a child process by handle_decoded_in_another_process_gives_the_same_result"]
fn child_executes_handle_from_file() {
    let path = std::env::var_os(HANDLE_FILE_VAR).expect("started by the parent test");
    let f: SkFunction = External::decode(&std::fs::read(path).unwrap()).unwrap();
    let size = f.execute::<Size>().unwrap();
    println!("SK-RESULT {} {}x{}", std::process::id(), size.w, size.h);
}
