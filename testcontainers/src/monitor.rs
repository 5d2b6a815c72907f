//! `MONITOR` on a raw connection: the commands Lua scripts run on the server, with their
//! arguments, so a test can list every key a script touched (declared or derived).

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct Monitor {
    reader: BufReader<TcpStream>,
}

/// One command a script ran: its arguments, the command name first.
pub type Command = Vec<Vec<u8>>;

impl Monitor {
    pub async fn start(addr: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connect for MONITOR");
        stream.write_all(b"MONITOR\r\n").await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        assert_eq!(line.trim_end(), "+OK", "MONITOR refused");
        Self { reader }
    }

    /// The commands scripts ran until a command carrying `marker` (send `ECHO marker` on another
    /// connection after the calls of interest).
    pub async fn script_commands_until(&mut self, marker: &str) -> Vec<Command> {
        let mut commands = Vec::new();
        loop {
            let mut raw = Vec::new();
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                self.reader.read_until(b'\n', &mut raw),
            )
            .await
            .expect("MONITOR line within 10 s")
            .unwrap();
            assert!(read > 0, "MONITOR connection closed");
            let line = String::from_utf8_lossy(&raw);
            if line.contains(marker) {
                return commands;
            }
            if let Some((_, args)) = line.split_once(" lua] ") {
                commands.push(parse_args(args.trim_end()));
            }
        }
    }
}

/// `"HGET" "key" "f\x00o"` -> the unescaped arguments.
fn parse_args(text: &str) -> Command {
    let mut args = Vec::new();
    let mut chars = text.bytes().peekable();
    while let Some(c) = chars.next() {
        if c != b'"' {
            continue;
        }
        let mut arg = Vec::new();
        while let Some(c) = chars.next() {
            match c {
                b'"' => break,
                b'\\' => match chars.next() {
                    Some(b'x') => {
                        let hex: Vec<u8> = chars.by_ref().take(2).collect();
                        let hex = std::str::from_utf8(&hex).unwrap_or("00");
                        arg.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                    }
                    Some(b'n') => arg.push(b'\n'),
                    Some(b'r') => arg.push(b'\r'),
                    Some(b't') => arg.push(b'\t'),
                    Some(b'a') => arg.push(7),
                    Some(b'b') => arg.push(8),
                    Some(other) => arg.push(other),
                    None => break,
                },
                other => arg.push(other),
            }
        }
        args.push(arg);
    }
    args
}
