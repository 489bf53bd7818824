//! A consumer group as the broker sees it: its state, its members (by `client.id`) and the
//! partitions each holds, read without joining the group (`ListGroups`/`DescribeGroups`
//! through librdkafka's group list). Blocking: call it from `spawn_blocking`.

use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::client::Client;
use rdkafka::error::KafkaResult;

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member's `client.id` (senders name theirs after their instance and role).
    pub client_id: String,
    /// Partitions the member holds, by topic.
    pub assignment: Vec<(String, Vec<i32>)>,
}

impl GroupMember {
    /// How many partitions of `topic` the member holds.
    pub fn partitions_of(&self, topic: &str) -> usize {
        self.assignment
            .iter()
            .filter(|(name, _)| name == topic)
            .map(|(_, partitions)| partitions.len())
            .sum()
    }
}

/// A group's state (`Stable`, `PreparingRebalance`, …) and members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The coordinator's name for the group's state.
    pub state: String,
    /// Its members.
    pub members: Vec<GroupMember>,
}

impl GroupView {
    /// Partitions held by all members together.
    pub fn assigned(&self) -> usize {
        self.members
            .iter()
            .flat_map(|m| &m.assignment)
            .map(|(_, partitions)| partitions.len())
            .sum()
    }
}

/// Describes `group`; `None` when the broker does not know it. Members whose assignment is
/// not in the consumer protocol's format show none.
pub fn describe_group<C: ClientContext>(
    client: &Client<C>,
    group: &str,
    timeout: Duration,
) -> KafkaResult<Option<GroupView>> {
    let list = client.fetch_group_list(Some(group), timeout)?;
    Ok(list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .map(|g| GroupView {
            state: g.state().to_owned(),
            members: g
                .members()
                .iter()
                .map(|m| GroupMember {
                    client_id: m.client_id().to_owned(),
                    assignment: m
                        .assignment()
                        .and_then(decode_assignment)
                        .unwrap_or_default(),
                })
                .collect(),
        }))
}

/// Decodes a consumer-protocol `MemberAssignment` (version i16, then an array of {topic
/// string, array of i32 partitions}, then user data, all big-endian); `None` if malformed.
pub fn decode_assignment(mut bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (bytes.get(..n)?, bytes.get(n..)?);
        *bytes = tail;
        Some(head)
    }
    fn int(bytes: &mut &[u8], n: usize) -> Option<i64> {
        let raw = take(bytes, n)?;
        Some(raw.iter().fold(0i64, |acc, b| (acc << 8) | i64::from(*b)))
    }
    take(&mut bytes, 2)?; // version
    let topics = usize::try_from(int(&mut bytes, 4)?).ok()?;
    let mut assignment = Vec::with_capacity(topics.min(1024));
    for _ in 0..topics {
        let name_len = usize::try_from(int(&mut bytes, 2)?).ok()?;
        let name = String::from_utf8(take(&mut bytes, name_len)?.to_vec()).ok()?;
        let count = usize::try_from(int(&mut bytes, 4)?).ok()?;
        let mut partitions = Vec::with_capacity(count.min(bytes.len() / 4));
        for _ in 0..count {
            partitions.push(i32::try_from(int(&mut bytes, 4)?).ok()?);
        }
        assignment.push((name, partitions));
    }
    Some(assignment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut out = vec![0, 1];
        out.extend((topics.len() as u32).to_be_bytes());
        for (name, partitions) in topics {
            out.extend((name.len() as u16).to_be_bytes());
            out.extend(name.as_bytes());
            out.extend((partitions.len() as u32).to_be_bytes());
            for p in *partitions {
                out.extend(p.to_be_bytes());
            }
        }
        out.extend([0, 0, 0, 0]); // user data: empty
        out
    }

    #[test]
    fn assignments_decode_by_topic() {
        let bytes = encode(&[("push", &[0, 3, 7]), ("push-retry-10s", &[1])]);
        let decoded = decode_assignment(&bytes).expect("well formed");
        assert_eq!(
            decoded,
            vec![
                ("push".to_owned(), vec![0, 3, 7]),
                ("push-retry-10s".to_owned(), vec![1])
            ]
        );
        let member = GroupMember {
            client_id: "c".into(),
            assignment: decoded,
        };
        assert_eq!(member.partitions_of("push"), 3);
        assert_eq!(member.partitions_of("other"), 0);
    }

    #[test]
    fn truncated_assignments_are_refused() {
        let bytes = encode(&[("push", &[0, 3, 7])]);
        for cut in [1, 5, 8, 12, 20] {
            assert_eq!(decode_assignment(&bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode_assignment(&[]), None);
    }
}
