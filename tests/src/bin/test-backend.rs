//! A backend in its own OS process, so a test can crash it with SIGKILL the way a pod dies, or run
//! it inside a network namespace: `test-backend NAME PORT [IP]` serves HTTP/1.1 and HTTP/2 on
//! IP:PORT (127.0.0.1 unless given) and answers every request with 200, its name in the body and
//! in `x-backend`. `test-backend NAME PORT IP tcp-echo` speaks no HTTP: it answers each line a
//! client sends with `NAME LINE` — a plain TCP protocol a proxy cannot parse.

use std::net::SocketAddr;
use std::process::exit;

use shifter_tests::Backend;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, port, ip, echo) = match args.as_slice() {
        [name, port] => (name, port, "127.0.0.1", false),
        [name, port, ip] => (name, port, ip.as_str(), false),
        [name, port, ip, mode] if mode == "tcp-echo" => (name, port, ip.as_str(), true),
        _ => {
            eprintln!("usage: test-backend NAME PORT [IP [tcp-echo]] (e.g. test-backend web-v2-a 8080 10.77.0.3)");
            exit(2);
        }
    };
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        eprintln!("test-backend: IP must be an address like 10.77.0.3, got {ip:?}");
        exit(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("test-backend: PORT must be a number from 1 to 65535, got {port:?}");
        exit(2);
    };
    if echo {
        echo_lines(name.clone(), SocketAddr::new(ip, port)).await;
    }
    let backend = Backend::start_on(name, SocketAddr::new(ip, port)).await;
    println!("test-backend {name} serving on {}", backend.addr);
    std::future::pending::<()>().await;
}

/// Answers every line with `name line`, forever.
async fn echo_lines(name: String, addr: SocketAddr) -> ! {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| {
        eprintln!("test-backend: binding {addr}: {e}");
        exit(1)
    });
    println!("test-backend {name} serving on {addr} (tcp-echo)");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let name = name.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if write.write_all(format!("{name} {line}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}
