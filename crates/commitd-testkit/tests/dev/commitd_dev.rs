//! The `commitd-dev` binary: the development commands the product binary does not carry.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

#[test]
fn aws_test_server_subcommand_serves_on_a_free_port() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_commitd-dev"))
        .args(["aws-test-server", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first.trim().to_string();
    let addr = url.strip_prefix("http://").expect("first line is the URL");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /_commitd/stats HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"purchases\":0"), "{text}");
}

#[test]
fn synth_writes_a_scenario_that_commitd_reads() {
    let dir = std::env::temp_dir().join(format!("commitd-dev-synth-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_commitd-dev"))
        .args([
            "synth", "--shape", "steady", "--groups", "2", "--seed", "3", "--months", "1",
        ])
        .args(["--eval-months", "1", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scenario = commitd::sources::load_scenario(&dir).expect("the scenario loads");
    assert_eq!(scenario.usage.groups.len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
