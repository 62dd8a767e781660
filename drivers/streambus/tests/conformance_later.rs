//! The shared conformance suite against the broker double's later profile: consumer
//! groups with client-side range assignment, offsets on the broker, headers stored.

mod support;

use support::double_fixture;
use tidewater_conformance::DriverFixture;
use tidewater_streambus::StreamBus;
use tidewater_streambus_double::Profile;

async fn fixture() -> DriverFixture<StreamBus> {
    let f = double_fixture(Profile::Later).await;
    assert_eq!(f.driver().generation(), tidewater_streambus::BrokerGeneration::Later, "the probe sees a later broker");
    assert!(!f.driver().envelope(), "no envelope where the broker keeps headers");
    // The tests' session (`support::config`): the group drops a member silent that long.
    f.busy_after(std::time::Duration::from_secs(3))
}

tidewater_conformance::conformance_tests!(
    fixture,
    ignore {
        prefetch_bounds_read_ahead:
            "a StreamBus group's members own partitions: a partition's records wait for its owner",
        a_topic_made_again_is_a_new_topic:
            "a later StreamBus broker keeps group offsets in its group coordinator, apart from the topics (so \
             the double does, as the broker's source reads; not seen on a real broker), and the protocol has no \
             request to drop them: a group that read a deleted topic skips the first records of one made again"
    }
);
