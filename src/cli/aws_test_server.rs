//! `commitd aws-test-server`: the local AWS-compatible peer as a process, for demos and for
//! trying the AWS commands without an account:
//!
//! ```text
//! commitd aws-test-server --listen 127.0.0.1:4566 &
//! AWS_ENDPOINT_URL=http://127.0.0.1:4566 AWS_REGION=us-east-1 \
//!   AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test commitd offerings --provider aws --region us-east-1
//! ```
//!
//! Faults and the clock are steered through `POST /_commitd/faults` and `/_commitd/clock`.

use super::inventory::runtime;
use crate::aws::testserver::{TestServer, World};
use anyhow::Context;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

/// Run the local AWS-compatible test server (Savings Plans and EC2 Reserved Instances) with
/// a demo catalogue. Development and testing only: it holds no real commitments.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address to listen on (port 0 picks a free port; the first line printed is the URL).
    #[arg(long, default_value = "127.0.0.1:4566")]
    pub listen: SocketAddr,
    /// Region of the simulated account and its catalogue.
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let server = TestServer::bind(args.listen, World::demo(&args.region))
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        // The first line is machine-readable, so scripts and tests can find a port-0 server.
        println!("{}", server.endpoint());
        std::io::stdout().flush()?;
        eprintln!("AWS test server for {} (Ctrl-C to stop)", args.region);
        tokio::select! {
            _ = server.run_forever() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
