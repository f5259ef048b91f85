//! The internal topics of a scale-out job (its repartition topics): created by the members,
//! deleted by `spate reset`, both through Kafka's admin API.

use super::repartition::Repartition;
use anyhow::{Result, anyhow, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::time::Duration;

/// An admin client on the job's brokers, and a runtime to wait for its answers on.
fn admin(
    config: &rdkafka::ClientConfig,
) -> Result<(AdminClient<DefaultClientContext>, tokio::runtime::Runtime)> {
    let admin = config
        .create()
        .map_err(|e| anyhow!("cannot create a Kafka admin client: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok((admin, runtime))
}

fn options() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))
}

/// Creates the repartition topics with `partitions` partitions each, their replication factor
/// and topic settings, unless they exist.
pub(super) fn create(
    config: &rdkafka::ClientConfig,
    repartition: &Repartition,
    partitions: i32,
) -> Result<()> {
    let (admin, runtime) = admin(config)?;
    let new: Vec<NewTopic<'_>> = (repartition.topics.iter())
        .map(|topic| {
            let mut new = NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(repartition.replication),
            );
            for (key, value) in &repartition.topic_config {
                new = new.set(key, value);
            }
            new
        })
        .collect();
    let results = runtime
        .block_on(admin.create_topics(&new, &options()))
        .map_err(|e| anyhow!("cannot create the repartition topics: {e}"))?;
    let replication = repartition.replication_said();
    for result in results {
        match result {
            Ok(topic) => tracing::info!(
                "created the repartition topic '{topic}' with {partitions} partitions, \
                 {replication}"
            ),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                bail!("cannot create the repartition topic '{topic}': {code}")
            }
        }
    }
    Ok(())
}

/// Deletes `topic`; false when it did not exist.
pub(super) fn delete(config: &rdkafka::ClientConfig, topic: &str) -> Result<bool> {
    let (admin, runtime) = admin(config)?;
    let results = runtime
        .block_on(admin.delete_topics(&[topic], &options()))
        .map_err(|e| anyhow!("cannot delete the topic '{topic}': {e}"))?;
    let mut deleted = false;
    for result in results {
        match result {
            Ok(_) => deleted = true,
            Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((_, code)) => bail!("cannot delete the topic '{topic}': {code}"),
        }
    }
    Ok(deleted)
}
