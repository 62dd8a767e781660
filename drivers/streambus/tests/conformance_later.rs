//! The shared conformance suite against the broker double's later profile: consumer
//! groups with client-side range assignment, offsets on the broker, headers stored.

mod support;

use support::DoubleFixture;
use tidewater_streambus_double::Profile;

async fn fixture() -> DoubleFixture {
    let f = DoubleFixture::start(Profile::Later).await;
    assert_eq!(f.bus.generation(), tidewater_streambus::BrokerGeneration::Later, "the probe sees a later broker");
    assert!(!f.bus.envelope(), "no envelope where the broker keeps headers");
    f
}

tidewater_conformance::conformance_tests!(fixture);
