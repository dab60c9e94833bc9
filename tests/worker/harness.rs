//! A test harness that puts a [`WorkerDriver`] behind channels, so a test can play the
//! business code and a fake gateway in one script: events come out of an unbounded
//! channel, calls and event ends go in as [`ToWorker`] messages. Test scaffolding only:
//! the business worker calls its driver directly, with no channel.

use std::task::Poll;

use gatewayworker::api::{ApiCall, ApiError, CurrentClient};
use gatewayworker::net::Net;
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::worker::core::{CallDone, ClientEvent, ClientEventKind, WorkerConfig};
use gatewayworker::worker::{DriverConfig, WorkerDriver};
use tokio::sync::{mpsc, oneshot};

/// What the script asks of the driver.
pub enum ToWorker {
    /// [`WorkerDriver::call`]; the result goes to `reply`.
    Call {
        call: ApiCall,
        current: Option<CurrentClient>,
        reply: oneshot::Sender<CallDone>,
    },
    /// [`WorkerDriver::end_event`].
    EndEvent {
        client: CurrentClient,
        kind: ClientEventKind,
        old: PhpValue,
        new: PhpValue,
        reply: Option<oneshot::Sender<Result<(), ApiError>>>,
    },
}

enum Next {
    Command(Box<ToWorker>),
    Io,
    Stop,
}

/// Runs a driver until `commands` closes or `events` is dropped.
pub async fn run<N: Net>(
    net: N,
    config: WorkerConfig,
    driver: DriverConfig,
    events: mpsc::UnboundedSender<ClientEvent>,
    mut commands: mpsc::Receiver<ToWorker>,
) {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async move {
            let mut d = WorkerDriver::new(net, config, driver);
            loop {
                let next = std::future::poll_fn(|cx| {
                    match commands.poll_recv(cx) {
                        Poll::Ready(Some(command)) => {
                            return Poll::Ready(Next::Command(Box::new(command)))
                        }
                        Poll::Ready(None) => return Poll::Ready(Next::Stop),
                        Poll::Pending => {}
                    }
                    while let Some(event) = d.try_event() {
                        if events.send(event).is_err() {
                            return Poll::Ready(Next::Stop);
                        }
                    }
                    d.poll_ready(cx).map(|()| Next::Io)
                })
                .await;
                let command = match next {
                    Next::Stop => return,
                    Next::Io => continue,
                    Next::Command(command) => *command,
                };
                match command {
                    ToWorker::Call {
                        call,
                        current,
                        reply,
                    } => {
                        let done = d.call(&call, current.as_ref(), false).await;
                        let _ = reply.send(done);
                    }
                    ToWorker::EndEvent {
                        client,
                        kind,
                        old,
                        new,
                        reply,
                    } => {
                        let outcome = d.end_event(&client, kind, &old, &new);
                        if let Some(reply) = reply {
                            let _ = reply.send(outcome);
                        }
                    }
                }
            }
        })
        .await
}
