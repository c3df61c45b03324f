//! A circuit breaker counting "shorts" (failures) and tripping after too
//! many, in the style of the Python `suitkaise` `Circuit`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::clock::{Clock, SystemClock};
use crate::retry::{Jitter, PolicyError, scale};

/// Why a [`Circuit`] could not be built; names the circuit.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CircuitError {
    /// `num_shorts_to_trip` was 0.
    #[error("circuit `{name}` needs at least 1 short to trip, got 0")]
    ZeroShorts {
        /// The circuit's name.
        name: String,
    },
    /// The backoff factor is NaN, infinite or below 1.
    #[error("circuit `{name}`: backoff factor must be a finite number >= 1, got {factor}")]
    BadBackoffFactor {
        /// The circuit's name.
        name: String,
        /// The rejected factor.
        factor: f64,
    },
    /// The jitter's parameter is invalid.
    #[error("circuit `{name}` has an invalid jitter")]
    InvalidJitter {
        /// The circuit's name.
        name: String,
        /// What is wrong with it.
        #[source]
        source: PolicyError,
    },
}

/// Builds a [`Circuit`]; start with [`Circuit::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct CircuitBuilder {
    name: String,
    num_shorts_to_trip: u32,
    sleep_time: Duration,
    backoff_factor: f64,
    max_sleep_time: Option<Duration>,
    jitter: Jitter,
    clock: Option<Arc<dyn Clock>>,
    breaking: bool,
    seed: Option<u64>,
}

impl CircuitBuilder {
    /// Multiplies the sleep after each trip (default 1.0: constant sleep);
    /// must be finite and ≥ 1.
    pub fn backoff_factor(mut self, factor: f64) -> Self {
        self.backoff_factor = factor;
        self
    }

    /// Caps every trip's sleep, before and after jitter (default: no cap).
    pub fn max_sleep_time(mut self, cap: Duration) -> Self {
        self.max_sleep_time = Some(cap);
        self
    }

    /// Randomises each trip's sleep (default [`Jitter::None`]); the Python
    /// library's `jitter=0.2` is `Jitter::Ratio(0.2)`.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Reads and waits time through `clock` (default: the real clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// A breaking circuit does not sleep when it trips: it stays broken,
    /// ignoring shorts, until [`Circuit::reset`] (default `false`).
    pub fn breaking(mut self, breaking: bool) -> Self {
        self.breaking = breaking;
        self
    }

    /// Seeds the jitter's random generator, for reproducible sleeps
    /// (default: randomly seeded).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks the settings and builds the circuit.
    ///
    /// # Errors
    ///
    /// [`CircuitError`] for zero shorts to trip, a backoff factor that is not
    /// a finite number ≥ 1, or an invalid jitter ratio.
    pub fn build(self) -> Result<Circuit, CircuitError> {
        if self.num_shorts_to_trip == 0 {
            return Err(CircuitError::ZeroShorts { name: self.name });
        }
        if !(self.backoff_factor.is_finite() && self.backoff_factor >= 1.0) {
            return Err(CircuitError::BadBackoffFactor {
                name: self.name,
                factor: self.backoff_factor,
            });
        }
        if let Err(source) = self.jitter.validate() {
            return Err(CircuitError::InvalidJitter {
                name: self.name,
                source,
            });
        }
        let rng = match self.seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        let base_sleep = cap(self.sleep_time, self.max_sleep_time);
        Ok(Circuit {
            name: self.name,
            num_shorts_to_trip: self.num_shorts_to_trip,
            base_sleep,
            backoff_factor: self.backoff_factor,
            max_sleep_time: self.max_sleep_time,
            jitter: self.jitter,
            breaking: self.breaking,
            clock: self.clock.unwrap_or_else(SystemClock::shared),
            state: Mutex::new(State {
                shorts: 0,
                total_trips: 0,
                current_sleep: base_sleep,
                rng,
            }),
            broken: AtomicBool::new(false),
            sleeping: AtomicU32::new(0),
        })
    }
}

fn cap(d: Duration, max: Option<Duration>) -> Duration {
    max.map_or(d, |max| d.min(max))
}

/// A thread-safe circuit breaker: count failures with
/// [`short`](Circuit::short); after `num_shorts_to_trip` of them the circuit
/// trips.
///
/// A normal circuit trips by sleeping (through its [`Clock`]) for its current
/// sleep time — jittered, capped by `max_sleep_time` — then resets its short
/// count and carries on, with the next sleep multiplied by the backoff
/// factor. This throttles a loop that keeps failing. A *breaking* circuit
/// instead becomes broken and stays so until [`reset`](Circuit::reset), so
/// every thread polling [`is_broken`](Circuit::is_broken) can stop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use sk_core::{Circuit, ManualClock};
///
/// let clock = ManualClock::new();
/// let circuit = Circuit::builder("db", 3, Duration::from_millis(100))
///     .backoff_factor(2.0)
///     .with_clock(clock.shared())
///     .build()?;
/// for _ in 0..6 {
///     circuit.short();
/// }
/// assert_eq!(circuit.total_trips(), 2);
/// assert_eq!(clock.sleeps(), [Duration::from_millis(100), Duration::from_millis(200)]);
///
/// let shutdown = Circuit::builder("shutdown", 1, Duration::ZERO).breaking(true).build()?;
/// assert!(shutdown.short());
/// assert!(shutdown.is_broken());
/// shutdown.reset();
/// assert!(!shutdown.is_broken());
/// # Ok::<(), sk_core::CircuitError>(())
/// ```
pub struct Circuit {
    name: String,
    num_shorts_to_trip: u32,
    base_sleep: Duration,
    backoff_factor: f64,
    max_sleep_time: Option<Duration>,
    jitter: Jitter,
    breaking: bool,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    /// A breaking circuit that has tripped.
    broken: AtomicBool,
    /// Trip sleeps in progress (normal circuits are broken while sleeping).
    sleeping: AtomicU32,
}

#[derive(Debug)]
struct State {
    shorts: u32,
    total_trips: u64,
    current_sleep: Duration,
    rng: fastrand::Rng,
}

/// Ends a trip sleep even if the clock panics.
struct Sleeping<'a>(&'a AtomicU32);

impl Drop for Sleeping<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Circuit {
    /// A builder for a circuit named `name` that trips after
    /// `num_shorts_to_trip` shorts and then sleeps `sleep_time`.
    pub fn builder(
        name: impl Into<String>,
        num_shorts_to_trip: u32,
        sleep_time: Duration,
    ) -> CircuitBuilder {
        CircuitBuilder {
            name: name.into(),
            num_shorts_to_trip,
            sleep_time,
            backoff_factor: 1.0,
            max_sleep_time: None,
            jitter: Jitter::None,
            clock: None,
            breaking: false,
            seed: None,
        }
    }

    /// A circuit with the default settings (no backoff, no cap, no jitter,
    /// real clock, not breaking).
    ///
    /// # Errors
    ///
    /// [`CircuitError::ZeroShorts`] when `num_shorts_to_trip` is 0.
    pub fn new(
        name: impl Into<String>,
        num_shorts_to_trip: u32,
        sleep_time: Duration,
    ) -> Result<Circuit, CircuitError> {
        Self::builder(name, num_shorts_to_trip, sleep_time).build()
    }

    /// Counts one short; trips when the count reaches the threshold and
    /// returns whether it did.
    ///
    /// On a normal circuit a trip sleeps in the calling thread (other threads
    /// keep counting meanwhile). A broken breaking circuit ignores shorts
    /// and returns `false`.
    pub fn short(&self) -> bool {
        let sleep = {
            let mut state = self.state.lock();
            if self.breaking && self.broken.load(Ordering::Acquire) {
                return false;
            }
            state.shorts += 1;
            if state.shorts < self.num_shorts_to_trip {
                return false;
            }
            self.trip_locked(&mut state)
        };
        self.finish_trip(sleep);
        true
    }

    /// Trips now, whatever the short count (a no-op on a broken breaking
    /// circuit).
    pub fn trip(&self) {
        let sleep = {
            let mut state = self.state.lock();
            if self.breaking && self.broken.load(Ordering::Acquire) {
                return;
            }
            self.trip_locked(&mut state)
        };
        self.finish_trip(sleep);
    }

    /// Updates the counters and returns the sleep to take, if any. The sleep
    /// itself happens after the lock is released.
    fn trip_locked(&self, state: &mut State) -> Option<Duration> {
        state.shorts = 0;
        state.total_trips += 1;
        let sleep = cap(
            self.jitter.apply(state.current_sleep, &mut state.rng),
            self.max_sleep_time,
        );
        state.current_sleep = cap(
            scale(state.current_sleep, self.backoff_factor),
            self.max_sleep_time,
        );
        if self.breaking {
            self.broken.store(true, Ordering::Release);
            None
        } else {
            self.sleeping.fetch_add(1, Ordering::AcqRel);
            Some(sleep)
        }
    }

    fn finish_trip(&self, sleep: Option<Duration>) {
        if let Some(sleep) = sleep {
            let _sleeping = Sleeping(&self.sleeping);
            self.clock.sleep(sleep);
        }
    }

    /// Clears the broken state and the short count and restores the base
    /// sleep time; [`total_trips`](Circuit::total_trips) is kept.
    pub fn reset(&self) {
        let mut state = self.state.lock();
        state.shorts = 0;
        state.current_sleep = self.base_sleep;
        self.broken.store(false, Ordering::Release);
    }

    /// Whether the circuit is broken: a breaking circuit that has tripped
    /// and not been reset, or a normal circuit in the middle of a trip sleep.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire) || self.sleeping.load(Ordering::Acquire) > 0
    }

    /// Shorts counted since the last trip or reset.
    pub fn times_shorted(&self) -> u32 {
        self.state.lock().shorts
    }

    /// Trips since the circuit was built.
    pub fn total_trips(&self) -> u64 {
        self.state.lock().total_trips
    }

    /// The sleep the next trip will take, before jitter.
    pub fn current_sleep_time(&self) -> Duration {
        self.state.lock().current_sleep
    }

    /// The circuit's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Shorts needed to trip.
    pub fn num_shorts_to_trip(&self) -> u32 {
        self.num_shorts_to_trip
    }

    /// Whether this is a breaking circuit.
    pub fn is_breaking(&self) -> bool {
        self.breaking
    }
}

impl fmt::Debug for Circuit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("Circuit")
            .field("name", &self.name)
            .field("num_shorts_to_trip", &self.num_shorts_to_trip)
            .field("breaking", &self.breaking)
            .field("broken", &self.is_broken())
            .field("times_shorted", &state.shorts)
            .field("total_trips", &state.total_trips)
            .field("current_sleep", &state.current_sleep)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
