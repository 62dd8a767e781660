//! The shared conformance suite against the broker double's v1.0.x profile: no groups
//! (static partitions, positions in the driver's offset store), metadata carried in the
//! value envelope because the broker drops headers and timestamps.

mod support;

use support::DoubleFixture;
use tidewater_streambus_double::Profile;

async fn fixture() -> DoubleFixture {
    let f = DoubleFixture::start(Profile::V1).await;
    assert_eq!(f.bus.generation(), tidewater_streambus::BrokerGeneration::V1, "the probe sees a v1.0.x broker");
    assert!(f.bus.envelope(), "the envelope is on against v1.0.x");
    f
}

tidewater_conformance::conformance_tests!(
    fixture,
    ignore { consumer_groups: "StreamBus v1.0.x has no consumer groups: members cannot share partitions" }
);
