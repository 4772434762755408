//! `ferrotile-loadgen`: a load generator lean enough not to be the bottleneck for small messages
//! and many sockets. Run with `cargo run --release -p ferrotile-loadgen -- <subcommand> --help`.
//!
//! Subcommands: `subscribers` (N WebSocket subscribers, counting messages and checking the
//! msgpack `sequence` per socket for gaps and duplicates; with `--frames`, counting frames by the
//! id the writers embed and measuring their latency), `idle` (N quiet sockets held open), `put`
//! (stream-only `PUT /array/full/{key}?persist=false`, paced or flat out), `patch` (persisted
//! appends, one PATCH extend in flight per connection), `push` (the same frames
//! over `WS /api/v1/stream/push/{key}`, acknowledged by sequence), `get` (control-plane GET
//! loop, over TCP or a Unix socket); `soak` (subscriber slots leaving and rejoining with
//! `start = last + 1`, counting lost, announced and duplicated frames; one JSON line a minute).
//! Each prints a readable summary on stderr and one JSON line on stdout.
//! Only loopback targets are accepted; every loop is bounded in count and time.

mod error;
mod frames;
mod http;
mod pace;
mod push;
mod report;
mod soak;
mod target;
mod ws;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::error::LoadResult;

#[derive(Parser)]
#[command(version, about = "Load generator for ferrotile / Tiled (loopback targets only)")]
struct Cli {
    /// Tokio worker threads of the generator.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct SocketArgs {
    /// Stream URL, e.g. ws://127.0.0.1:8000/api/v1/stream/single/x?envelope_format=msgpack
    #[arg(long)]
    url: String,
    /// Sockets to open (at most 200,000).
    #[arg(long, default_value_t = 1000)]
    count: usize,
    /// API key, sent as `Authorization: Apikey KEY`.
    #[arg(long)]
    api_key: Option<String>,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Seconds allowed for connecting all sockets.
    #[arg(long, default_value_t = 60.0)]
    connect_timeout: f64,
}

/// What `put` and `push` share: the frames and their pacing.
#[derive(Args)]
struct WriterArgs {
    /// Bytes per frame: a 1-D uint8 array of this length, its frame id in the first 8 bytes and
    /// the CLOCK_MONOTONIC send time (ns) in the next 8.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Create the array first (POST /api/v1/metadata/; an existing one is accepted).
    #[arg(long)]
    create: bool,
    /// Total frames per second over all connections.
    #[arg(long, conflicts_with = "max", required_unless_present = "max")]
    rate: Option<f64>,
    /// Send as fast as the server answers (PUT responses, push acks).
    #[arg(long)]
    max: bool,
    #[arg(long, default_value_t = 1)]
    connections: usize,
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many frames in total (0 = only the duration limits).
    #[arg(long, default_value_t = 0)]
    requests: u64,
    #[arg(long)]
    api_key: Option<String>,
}

impl WriterArgs {
    fn rate(&self) -> Option<f64> {
        if self.max {
            None
        } else {
            self.rate
        }
    }
}

/// The array an HTTP writer writes.
#[derive(Args)]
struct ArrayArgs {
    /// Server base URL, e.g. http://127.0.0.1:8000
    #[arg(long)]
    url: String,
    /// Array key (path under the root).
    #[arg(long, default_value = "x")]
    key: String,
}

#[derive(Subcommand)]
enum Command {
    /// Open N subscribers, count messages and bytes, check sequences; print READY when connected.
    Subscribers {
        #[command(flatten)]
        sockets: SocketArgs,
        /// Seconds to read after every socket has connected.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Stop early once every socket has received this many data messages (0 = never).
        #[arg(long, default_value_t = 0)]
        expect: u64,
        /// Count frames by the id in their first 8 bytes and time them by the send time in the
        /// next 8, found in each message as is (`raw`) or in a msgpack envelope's `payload`.
        #[arg(long, value_enum)]
        frames: Option<frames::Payload>,
        /// Stop once no data message has arrived for this many seconds after the first one
        /// (0 = never).
        #[arg(long, default_value_t = 0.0)]
        idle_stop: f64,
    },
    /// Soak subscribers: N slots that stay a random 5-30 s, leave, come back 0.2-2 s later with
    /// `start = last + 1`; one JSON line per minute since `--t0-ns`, then a summary line.
    Soak {
        /// Stream URL with `envelope_format=msgpack&notify_gaps=true`; rejoins add `&start=N`.
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 32)]
        slots: usize,
        #[arg(long)]
        api_key: Option<String>,
        /// CLOCK_MONOTONIC ns the minutes count from (default: now).
        #[arg(long)]
        t0_ns: Option<u64>,
        /// Slots leave and stop rejoining this many seconds after t0 (or at the final frame).
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        #[arg(long, default_value_t = 5.0)]
        stay_min: f64,
        #[arg(long, default_value_t = 30.0)]
        stay_max: f64,
        #[arg(long, default_value_t = 0.2)]
        pause_min: f64,
        #[arg(long, default_value_t = 2.0)]
        pause_max: f64,
        /// A visit ends when no message arrives for this many seconds.
        #[arg(long, default_value_t = 15.0)]
        read_timeout: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Open N idle subscribers, report the connect rate, hold them open; print READY when connected.
    Idle {
        #[command(flatten)]
        sockets: SocketArgs,
        /// Seconds to hold the sockets open after connecting.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
    },
    /// Stream-only array writes: PUT /api/v1/array/full/{key}?persist=false.
    Put {
        #[command(flatten)]
        array: ArrayArgs,
        #[command(flatten)]
        writer: WriterArgs,
    },
    /// Persisted appends: PATCH /api/v1/array/full/{key}?offset=i,0&shape=1,SIZE&extend=true of
    /// noise frames into a (rows, SIZE) uint8 array (`--create`: one row to start), one request
    /// in flight per connection (the stock tiled client's `x.patch(frame, offset=(i,),
    /// extend=True)` loop).
    Patch {
        #[command(flatten)]
        array: ArrayArgs,
        #[command(flatten)]
        writer: WriterArgs,
    },
    /// Frames over WebSocket push (WS /api/v1/stream/push/{key}), one binary message each,
    /// acknowledged by JSON `{"sequence": N}`.
    Push {
        /// Push URL, e.g. ws://127.0.0.1:8000/api/v1/stream/push/x?persist=false&mode=full (the
        /// array is the last path segment; each message replaces the whole 1-D array)
        #[arg(long)]
        url: String,
        /// Frames awaiting their ack per socket.
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Pseudo-random frame bytes (incompressible, as detector noise) instead of zeros: for
        /// persisted pushes, where the storage compresses what it keeps.
        #[arg(long)]
        noise: bool,
        /// Frame bytes as little-endian uint16 photon counts, Poisson around this mean (a
        /// photon-counting detector's frame: compressible, unlike --noise).
        #[arg(long, conflicts_with = "noise")]
        photons: Option<f64>,
        #[command(flatten)]
        writer: WriterArgs,
    },
    /// Control-plane GET loop (paths cycled per connection).
    Get {
        /// Server base URL, e.g. http://127.0.0.1:8000 (its authority is the `Host` header)
        #[arg(long)]
        url: String,
        /// Connect to this Unix socket instead (e.g. the Granian socket behind the edge).
        #[arg(long)]
        unix: Option<std::path::PathBuf>,
        /// Path(s) to GET; repeat for several.
        #[arg(long = "path", default_value = "/api/v1/")]
        paths: Vec<String>,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long)]
        api_key: Option<String>,
    },
}

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.clamp(0.0, 3600.0))
}

fn socket_run(
    args: SocketArgs,
    duration: f64,
    expect: u64,
    read_buffer: usize,
    frames: Option<frames::Payload>,
    idle_stop: f64,
) -> LoadResult<ws::SocketRun> {
    Ok(ws::SocketRun {
        target: target::parse(&args.url)?,
        count: args.count,
        api_key: args.api_key,
        connect_concurrency: args.connect_concurrency,
        connect_timeout: seconds(args.connect_timeout),
        duration: seconds(duration),
        expect,
        read_buffer,
        frames,
        idle_stop: seconds(idle_stop),
    })
}

/// Stream-only PUTs of a 1-D array, or (`patch_extend`) persisted appends to a `(rows, size)`
/// one, of `writer.size` bytes each.
async fn array_writes(array: ArrayArgs, writer: WriterArgs, patch_extend: bool) -> LoadResult<()> {
    let ArrayArgs { url, key } = array;
    let base = target::parse(&url)?;
    if writer.create {
        let shape: &[usize] = if patch_extend { &[1, writer.size] } else { &[writer.size] };
        http::create_array(&base, writer.api_key.as_deref(), &key, shape).await?;
    }
    let path = format!("/api/v1/array/full/{key}{}", if patch_extend { "" } else { "?persist=false" });
    let plan = http::Plan {
        target: target::join(&base, &path),
        paths: vec![path],
        put_size: Some(writer.size),
        patch_extend,
        rate: writer.rate(),
        api_key: writer.api_key,
        connections: writer.connections,
        duration: seconds(writer.duration),
        max_requests: writer.requests,
        unix: None,
    };
    http::run(plan, if patch_extend { "patch" } else { "put" }).await
}

async fn run(command: Command) -> LoadResult<()> {
    match command {
        Command::Subscribers { sockets, duration, expect, frames, idle_stop } => {
            ws::run_sockets(socket_run(sockets, duration, expect, 64 * 1024, frames, idle_stop)?, "subscribers").await
        }
        Command::Soak {
            url,
            slots,
            api_key,
            t0_ns,
            seconds: total,
            stay_min,
            stay_max,
            pause_min,
            pause_max,
            read_timeout,
            seed,
        } => {
            let plan = soak::SoakPlan {
                target: target::parse(&url)?,
                api_key,
                slots,
                t0_ns: t0_ns.unwrap_or_else(frames::monotonic_ns),
                seconds: total.clamp(0.0, 86_400.0),
                stay: (stay_min, stay_max.max(stay_min)),
                pause: (pause_min, pause_max.max(pause_min)),
                read_timeout: seconds(read_timeout),
                seed,
            };
            soak::run(plan).await
        }
        Command::Idle { sockets, hold } => {
            ws::run_sockets(socket_run(sockets, hold, 0, 4096, None, 0.0)?, "idle").await
        }
        Command::Push { url, window, noise, photons, writer } => {
            let target = target::parse(&url)?;
            if writer.create {
                let path = url.split('?').next().unwrap_or_default();
                let key = path.rsplit('/').next().unwrap_or_default();
                http::create_array(&target::join(&target, "/"), writer.api_key.as_deref(), key, &[writer.size]).await?;
            }
            let plan = push::PushPlan {
                target,
                size: writer.size,
                rate: writer.rate(),
                api_key: writer.api_key,
                connections: writer.connections,
                window,
                noise,
                photons,
                duration: seconds(writer.duration),
                max_frames: writer.requests,
            };
            push::run(plan).await
        }
        Command::Put { array, writer } => array_writes(array, writer, false).await,
        Command::Patch { array, writer } => array_writes(array, writer, true).await,
        Command::Get { url, unix, paths, connections, duration, api_key } => {
            let base = target::parse(&url)?;
            let plan = http::Plan {
                target: base,
                paths,
                put_size: None,
                patch_extend: false,
                api_key,
                connections,
                rate: None,
                duration: seconds(duration),
                max_requests: 0,
                unix,
            };
            http::run(plan, "get").await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Many sockets need many descriptors; raise the soft limit as far as the hard one allows.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        eprintln!("warning: could not raise the open-files limit: {e}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(cli.threads.max(1)).enable_all().build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(cli.command)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrotile-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
