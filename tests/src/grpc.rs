//! A real gRPC server for end-to-end tests: one streaming call (`Destinations.Watch` of shifter's
//! own proto) that answers with one snapshot naming the server, so a caller sees which backend
//! its call reached.

use std::net::SocketAddr;

/// A gRPC server whose one streaming call answers with a snapshot naming the server: which
/// backend a call reached is in the answer.
pub async fn grpc_backend(name: &'static str) -> SocketAddr {
    grpc_backend_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
}

/// The same on `addr` (port 0 picks a free one).
pub async fn grpc_backend_on(name: &'static str, addr: SocketAddr) -> SocketAddr {
    use shifter_proto::v1::destinations_server::{Destinations, DestinationsServer};
    use shifter_proto::v1::{Snapshot, WatchRequest};

    struct Named(&'static str);
    type Stream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<Snapshot, tonic::Status>> + Send>>;
    #[tonic::async_trait]
    impl Destinations for Named {
        type WatchStream = Stream;
        async fn watch(&self, _: tonic::Request<WatchRequest>) -> Result<tonic::Response<Stream>, tonic::Status> {
            let snapshot = Snapshot { authority: self.0.into(), ..Default::default() };
            Ok(tonic::Response::new(Box::pin(tokio_stream::once(Ok(snapshot)))))
        }
    }
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("gRPC backend on {addr}: {e}"));
    let addr = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(DestinationsServer::new(Named(name)))
            .serve_with_incoming(incoming),
    );
    addr
}

/// A client of [`grpc_backend`]s through `addr` (a proxy's gateway), connecting on first use.
pub fn grpc_client(
    addr: SocketAddr,
) -> shifter_proto::v1::destinations_client::DestinationsClient<tonic::transport::Channel> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}")).expect("a URI").connect_lazy();
    shifter_proto::v1::destinations_client::DestinationsClient::new(channel)
}

/// One call: the name of the backend that answered, or what went wrong.
pub async fn grpc_call(
    client: &mut shifter_proto::v1::destinations_client::DestinationsClient<tonic::transport::Channel>,
) -> String {
    match client.watch(shifter_proto::v1::WatchRequest::default()).await {
        Ok(response) => match response.into_inner().message().await {
            Ok(Some(snapshot)) => snapshot.authority,
            other => format!("no message: {other:?}"),
        },
        Err(status) => format!("status {:?}", status.code()),
    }
}
