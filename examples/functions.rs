//! Registries, function handles and modifiers, end to end.
//!
//! Run with `cargo run --example functions`.
//!
//! A small "thumbnail service": functions are registered statically, bound
//! into named instances, sent through the external format as bytes (as
//! they would be to another process), run with retry, timeout, rate-limit
//! and background modifiers, and counted in global storage. A circuit
//! breaker guards a flaky dependency.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use suitkaise::prelude::*;
use suitkaise::{Circuit, Permanent, StopToken as Token};

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Thumbnail {
    source: String,
    width: u32,
    height: u32,
    bytes: usize,
}

/// Renders a thumbnail (simulated: the work is a checksum over a buffer).
#[suitkaise::function]
fn thumbnail(source: String, width: u32, height: u32) -> Thumbnail {
    let pixels = (width * height) as usize;
    let buffer: Vec<u8> = (0..pixels).map(|i| (i % 251) as u8).collect();
    let bytes = buffer.iter().map(|&b| b as usize).sum::<usize>() % 65_536 + pixels / 10;
    Thumbnail {
        source,
        width,
        height,
        bytes,
    }
}

/// Lists a "directory": a generator of file names.
#[suitkaise::generator]
fn list_images(prefix: String, count: u32) -> impl Iterator<Item = String> {
    (1..=count).map(move |i| format!("{prefix}/img-{i:03}.png"))
}

/// Looks an image up in a remote catalogue (simulated with an async fn).
#[suitkaise::function]
async fn catalogue_size(source: String) -> usize {
    source.len() * 1_000
}

fn main() -> Result<(), Box<dyn Error>> {
    // --- Registries: three layers, resolved external -> internal -> global.
    let settings: Registry<String> = Registry::new("settings");
    settings.register(Layer::Global, "output_dir", "/var/thumbs".to_owned())?;
    settings.register(Layer::Internal, "output_dir", "target/thumbs".to_owned())?;
    settings.register(Layer::External, "quality", "high".to_owned())?;
    let output_dir = settings
        .get("output_dir")
        .ok_or("output_dir is registered")?;
    println!("settings: output_dir = {output_dir} (internal layer wins over global)");
    if let Err(e) = settings.register(Layer::External, "quality", "low".to_owned()) {
        println!("settings: {e}");
    }

    let root = SkRoot::detect()?;
    let here = root.relative(&std::env::current_dir()?)?;
    println!(
        "project root: {} (we run in ./{})",
        root.path().display(),
        here.display()
    );

    // --- Function handles: bind arguments by parameter name, register instances.
    SkFunction::builder("thumbnail")
        .arg("width", 64u32)
        .arg("height", 64u32)
        .register_as("thumb_small")?;
    SkFunction::builder("thumbnail")
        .arg("width", 256u32)
        .arg("height", 256u32)
        .register_as("thumb_large")?;

    let images: Vec<String> = SkFunction::builder("list_images")
        .arg("prefix", "photos".to_owned())
        .arg("count", 4u32)
        .build()?
        .stream::<String>()?
        .collect::<Result<_, _>>()?;
    println!("found {} images: {images:?}", images.len());

    // A handle crosses a process boundary as bytes; the receiver resolves
    // "thumbnail" in its own registry.
    let small = SkFunction::get("thumb_small")?;
    let wire = External::encode(&small)?;
    let received: SkFunction = External::decode(&wire)?;
    println!("thumb_small handle is {} bytes on the wire", wire.len());

    let storage = GlobalStorage::new();
    for image in &images {
        let args = Args::new().with("source", image)?;
        let thumb: Thumbnail = received.execute_with(&args)?;
        let size: usize = SkFunction::builder("catalogue_size")
            .arg("source", image.clone())
            .build()?
            .execute()?;
        storage.update("thumbnails_made", |n: Option<u64>| n.unwrap_or(0) + 1)?;
        println!(
            "  {} -> {}x{} thumbnail, {} bytes (catalogue: {size} bytes)",
            thumb.source, thumb.width, thumb.height, thumb.bytes
        );
    }

    // --- Modifiers, applied as background(retry(rate_limit(timeout(call)))).
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let flaky_upload = SkLambda::fallible("flaky_upload", move || {
        match seen.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err("upstream busy".into()),
            _ => Ok::<_, Box<dyn Error + Send + Sync>>("uploaded"),
        }
    })
    .retry(RetryPolicy::exponential(Duration::from_millis(5), 2.0).max_attempts(5))
    .timeout(Duration::from_secs(2))
    .rate_limit(50.0);
    let status: &str = flaky_upload.execute()?;
    println!(
        "upload: {status} after {} attempts",
        attempts.load(Ordering::SeqCst)
    );

    let refuse = SkLambda::fallible("validate", || {
        Err::<u8, _>(Permanent::new("corrupt header"))
    })
    .retry(RetryPolicy::fixed(Duration::from_millis(1)).max_attempts(5));
    if let Err(e) = refuse.execute::<u8>() {
        println!("validate: {} (not retried)", suitkaise::error_chain(&e));
    }

    let slow = SkLambda::new("slow_scan", || {
        let token = Token::current();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if token.as_ref().is_some_and(Token::is_stopped) {
                return "stopped early";
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        "finished"
    })
    .timeout(Duration::from_millis(50));
    match slow.execute::<&str>() {
        Ok(outcome) => println!("slow scan: {outcome}"),
        Err(e) => println!("slow scan: {}", suitkaise::error_chain(&e)),
    }

    let large = SkFunction::get("thumb_large")?;
    let background = large.clone();
    let job = SkLambda::fallible("large_thumbnail", move || {
        background
            .execute_with::<Thumbnail>(&Args::new().with("source", &"photos/cover.png".to_owned())?)
    })
    .background::<Thumbnail>()?;
    let cover = job.join()?;
    println!(
        "background: cover thumbnail {}x{}",
        cover.width, cover.height
    );

    // --- A circuit breaker around a dependency that keeps failing.
    let breaker = Circuit::new("catalogue", 3, Duration::from_millis(10))?;
    for _ in 0..6 {
        breaker.short();
    }
    println!(
        "circuit \"catalogue\": {} shorts counted, tripped {} times",
        breaker.times_shorted(),
        breaker.total_trips()
    );

    let made: Option<u64> = storage.get("thumbnails_made")?;
    println!("global storage: thumbnails_made = {}", made.unwrap_or(0));
    Ok(())
}
