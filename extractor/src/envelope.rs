//! Turning tracepoint firings into protobuf `Event`s: the envelope (node, run, per-category
//! sequence, time) around the payload `nodescope-proto` builds from the arguments.

use async_nats::Subject;
use nodescope_proto::p2p::DecodeOptions;
use nodescope_proto::subjects::{self, Category, SubjectError};
use nodescope_proto::{event::Payload, tracepoint_payload, Event, ExtractorKind};

use crate::event::{PayloadCut, TraceEvent};

/// Numbers and addresses the events of one extractor run.
pub struct Envelope {
    node_id: String,
    run_id: u64,
    /// Next sequence number per category (indexed like `Category::ALL`): a consumer of one
    /// category sees consecutive numbers, so any jump is a loss.
    next_sequence: Vec<u64>,
    subjects: Vec<Subject>,
    decode: DecodeOptions,
}

fn category_index(category: Category) -> usize {
    Category::ALL
        .iter()
        .position(|c| *c == category)
        .expect("every category is in ALL")
}

/// A random run id, so that a restarted extractor is told apart from a gap.
pub fn new_run_id() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: writes at most 8 bytes into our buffer.
    let read = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), 8, 0) };
    if read != 8 {
        // No entropy source: time and pid still differ between runs.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return now.as_nanos() as u64 ^ ((std::process::id() as u64) << 32);
    }
    u64::from_le_bytes(bytes)
}

/// This machine's host name: the default node id.
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most buffer.len() bytes.
    if unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } != 0 {
        return "localhost".to_string();
    }
    let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).replace('.', "-")
}

impl Envelope {
    pub fn new(
        prefix: &str,
        node_id: &str,
        run_id: u64,
        keep_raw_payloads: bool,
    ) -> Result<Envelope, SubjectError> {
        let subjects = Category::ALL
            .iter()
            .map(|category| subjects::subject(prefix, node_id, *category).map(Subject::from))
            .collect::<Result<_, _>>()?;
        Ok(Envelope {
            node_id: node_id.to_string(),
            run_id,
            next_sequence: vec![0; Category::ALL.len()],
            subjects,
            decode: DecodeOptions {
                keep_raw: keep_raw_payloads,
            },
        })
    }

    pub fn run_id(&self) -> u64 {
        self.run_id
    }

    /// Wraps a payload; returns the subject to publish on and the event.
    pub fn wrap(&mut self, pid: u32, timestamp_ns: u64, payload: Payload) -> (Subject, Event) {
        let index = category_index(Category::of(&payload));
        let sequence = self.next_sequence[index];
        self.next_sequence[index] += 1;
        let event = Event {
            node_id: self.node_id.clone(),
            extractor: ExtractorKind::Ebpf as i32,
            pid,
            sequence,
            run_id: self.run_id,
            timestamp_ns,
            payload: Some(payload),
            ..Event::default()
        };
        (self.subjects[index].clone(), event)
    }

    /// The event for one tracepoint firing.
    pub fn trace(&mut self, trace: TraceEvent) -> (Subject, Event) {
        let converted = tracepoint_payload(trace.tracepoint, trace.args, self.decode);
        let mut error = converted.error;
        let mut note = |text: &str| {
            if !error.is_empty() {
                error.push_str("; ");
            }
            error.push_str(text);
        };
        if trace.read_failed {
            note("an argument could not be read from the traced process");
        }
        match trace.payload_cut {
            Some(PayloadCut::ReadFailed) => {
                note("the payload could not be read from the traced process")
            }
            Some(PayloadCut::RingFull) => {
                note("the payload was cut: the kernel ring buffer was full")
            }
            // A capture-limit cut is the operator's choice: `truncated_fields` says it.
            Some(PayloadCut::CaptureLimit) | None => {}
        }
        let (subject, mut event) = self.wrap(trace.pid, trace.time_ns, converted.payload);
        event.truncated_fields = converted.truncated_fields;
        event.error = error;
        (subject, event)
    }
}
