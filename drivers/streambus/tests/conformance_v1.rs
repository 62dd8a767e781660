//! The shared conformance suite against the broker double's v1.0.x profile: no groups
//! (static partitions, positions in the driver's offset store), metadata carried in the
//! value envelope because the broker drops headers and timestamps.

mod support;

use support::double_fixture;
use tidewater_conformance::DriverFixture;
use tidewater_streambus::StreamBus;
use tidewater_streambus_double::Profile;

async fn fixture() -> DriverFixture<StreamBus> {
    let f = double_fixture(Profile::V1).await;
    assert_eq!(f.driver().generation(), tidewater_streambus::BrokerGeneration::V1, "the probe sees a v1.0.x broker");
    assert!(f.driver().envelope(), "the envelope is on against v1.0.x");
    f
}

tidewater_conformance::conformance_tests!(
    fixture,
    ignore {
        consumer_groups: "StreamBus v1.0.x has no consumer groups: members cannot share partitions",
        prefetch_bounds_read_ahead: "StreamBus v1.0.x has no consumer groups: members cannot share partitions",
    }
);
