//! Download bars on a terminal (indicatif): one per layer being downloaded, and a total. The
//! command line uses them only when stderr is a terminal and `-q` is not given, so pipes and
//! logs see nothing.

use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::pull::Progress;
use crate::model::Descriptor;

#[derive(Default)]
pub struct Bars {
    multi: MultiProgress,
    state: Mutex<Option<(ProgressBar, Vec<ProgressBar>)>>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
}

impl Progress for Bars {
    fn start(&self, layers: &[Descriptor]) {
        let mut state = self.state.lock().unwrap();
        // A pull that falls through to the next endpoint starts over.
        if let Some((total, bars)) = state.take() {
            bars.iter().for_each(ProgressBar::finish_and_clear);
            total.finish_and_clear();
        }
        let bars: Vec<ProgressBar> = layers
            .iter()
            .map(|l| {
                let b = self.multi.add(ProgressBar::new(l.size));
                b.set_style(style(
                    "{prefix} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}",
                ));
                b.set_prefix(format!("layer {}", &l.digest.hex()[..12]));
                b
            })
            .collect();
        let total = self
            .multi
            .add(ProgressBar::new(layers.iter().map(|l| l.size).sum()));
        total.set_style(style(
            "{prefix:>18} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec} eta {eta}",
        ));
        total.set_prefix("total");
        *state = Some((total, bars));
    }

    fn advance(&self, index: usize, bytes: i64) {
        if let Some((total, bars)) = &*self.state.lock().unwrap() {
            for b in [&bars[index], total] {
                match u64::try_from(bytes) {
                    Ok(n) => b.inc(n),
                    Err(_) => b.set_position(b.position().saturating_sub(bytes.unsigned_abs())),
                }
            }
        }
    }

    fn done(&self, index: usize) {
        if let Some((_, bars)) = &*self.state.lock().unwrap() {
            bars[index].finish();
        }
    }

    fn finish(&self) {
        if let Some((total, bars)) = self.state.lock().unwrap().take() {
            bars.iter().for_each(ProgressBar::finish_and_clear);
            total.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}
