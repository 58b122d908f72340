//! The simulated RPC refuses frames over its limit instead of reading them whole.

use std::time::Duration;

use dlft_sim::rpc::{MAX_FRAME_BYTES, call, serve};

#[test]
fn requests_over_the_frame_limit_get_no_reply() {
    let mut sim = turmoil::Builder::new()
        .rng_seed(1)
        .epoch(std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600))
        .simulation_duration(Duration::from_secs(60))
        .build();
    sim.host("server", || serve(9000, |req: String| async move { Some(req.len()) }));
    sim.client("client", async {
        let small: Result<usize, _> = call("server", 9000, &"hello".to_string(), Duration::from_secs(5)).await;
        assert_eq!(small.unwrap(), 5, "a normal request is answered");
        let huge = "x".repeat(MAX_FRAME_BYTES + 10);
        let big: Result<usize, _> = call("server", 9000, &huge, Duration::from_secs(5)).await;
        assert!(big.is_err(), "an over-limit request must not be answered: {big:?}");
        Ok(())
    });
    sim.run().unwrap();
}
