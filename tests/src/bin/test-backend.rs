//! A backend in its own OS process, so a test can crash it with SIGKILL the way a pod dies:
//! `test-backend NAME PORT` serves HTTP/1.1 and HTTP/2 on 127.0.0.1:PORT and answers every request
//! with 200, its name in the body and in `x-backend`.

use std::net::SocketAddr;
use std::process::exit;

use shifter_tests::Backend;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, port] = args.as_slice() else {
        eprintln!("usage: test-backend NAME PORT (e.g. test-backend web-v2-a 8080)");
        exit(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("test-backend: PORT must be a number from 1 to 65535, got {port:?}");
        exit(2);
    };
    let backend = Backend::start_on(name, SocketAddr::from(([127, 0, 0, 1], port))).await;
    println!("test-backend {name} serving on {}", backend.addr);
    std::future::pending::<()>().await;
}
