//! Every error of the crate that wraps another says it once: the wrapped
//! error is its `source()`, not part of its `Display`.

use std::time::Duration;

use sk_reg::RegistryError;
use sk_testkit::assert_chain_says_each_thing_once as says_once;

use crate::{CircuitError, FunctionError, Permanent, PolicyError, RetryError, TakeError};

fn failed() -> FunctionError {
    FunctionError::failed("parse", Permanent::new("corrupt header"))
}

#[test]
fn every_error_with_a_source_says_it_once() {
    let cereal = sk_cereal::Internal::decode::<String>(&[]).unwrap_err();
    says_once(&failed());
    says_once(&Permanent::new("corrupt header"));
    says_once(&FunctionError::RetriesExhausted {
        function: "parse".to_owned(),
        attempts: 3,
        last: Box::new(failed()),
    });
    says_once(&FunctionError::Cereal(cereal));
    says_once(&FunctionError::Registry(RegistryError::NotFound {
        registry: "functions".to_owned(),
        name: "parse".to_owned(),
    }));
    let cereal = sk_cereal::Internal::decode::<String>(&[]).unwrap_err();
    says_once(&TakeError::Decode(cereal));
    let retry: [RetryError<FunctionError>; 6] = [
        RetryError::NonRetryable {
            attempt: 1,
            error: failed(),
        },
        RetryError::Exhausted {
            attempts: 3,
            last: failed(),
        },
        RetryError::DeadlineExceeded {
            attempts: 2,
            elapsed: Duration::from_secs(1),
            deadline: Duration::from_secs(1),
            last: failed(),
        },
        RetryError::TimedOut {
            attempt: 1,
            timeout: Duration::from_secs(1),
            error: failed(),
        },
        RetryError::Stopped {
            attempts: 1,
            last: failed(),
        },
        RetryError::InvalidPolicy(PolicyError::BadFactor(0.5)),
    ];
    for err in &retry {
        says_once(err);
    }
    says_once(&CircuitError::InvalidJitter {
        name: "db".to_owned(),
        source: PolicyError::BadJitterRatio(-1.0),
    });
}
