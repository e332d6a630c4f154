//! A child's output, line by line, collected on a thread as it comes (tests and benches
//! read it while the child runs).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};

pub type Lines = Arc<Mutex<Vec<String>>>;

/// Read `r` to its end on a thread of its own, one entry per line.
pub fn collect(r: impl std::io::Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if let Ok(mut v) = l.lock() {
                v.push(line);
            }
        }
    });
    lines
}
