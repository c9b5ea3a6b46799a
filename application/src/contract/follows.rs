//! Contract of [`FollowGraph`].

use super::{creator, user};
use crate::ports::FollowGraph;
use std::future::Future;
use std::sync::Arc;
use vrs_domain::{CreatorId, UserId};

/// Runs every follow-graph case, each against a fresh adapter from `make`.
pub async fn follows_contract<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn FollowGraph>>,
{
    unknown_user_follows_nobody(make().await).await;
    added_follows_are_listed(make().await).await;
    following_twice_is_a_no_op(make().await).await;
    users_do_not_share_follows(make().await).await;
}

async fn followed(graph: &dyn FollowGraph, user: UserId) -> Vec<CreatorId> {
    let mut list = graph
        .followed_creators(user)
        .await
        .expect("followed_creators");
    list.sort_unstable();
    list
}

fn sorted(mut list: Vec<CreatorId>) -> Vec<CreatorId> {
    list.sort_unstable();
    list
}

async fn unknown_user_follows_nobody(graph: Arc<dyn FollowGraph>) {
    assert!(
        followed(graph.as_ref(), user()).await.is_empty(),
        "an unknown user follows nobody"
    );
}

async fn added_follows_are_listed(graph: Arc<dyn FollowGraph>) {
    let u = user();
    let (a, b, c) = (creator(), creator(), creator());
    graph.add_follows(&[(u, a), (u, b)]).await.expect("add");
    graph.add_follows(&[(u, c)]).await.expect("add");
    assert_eq!(
        followed(graph.as_ref(), u).await,
        sorted(vec![a, b, c]),
        "every creator added, across calls"
    );
}

async fn following_twice_is_a_no_op(graph: Arc<dyn FollowGraph>) {
    let u = user();
    let a = creator();
    graph.add_follows(&[(u, a), (u, a)]).await.expect("add");
    graph.add_follows(&[(u, a)]).await.expect("add again");
    assert_eq!(
        followed(graph.as_ref(), u).await,
        vec![a],
        "a repeated follow is listed once"
    );
}

async fn users_do_not_share_follows(graph: Arc<dyn FollowGraph>) {
    let (u1, u2) = (user(), user());
    let (a, b) = (creator(), creator());
    graph.add_follows(&[(u1, a), (u2, b)]).await.expect("add");
    assert_eq!(
        followed(graph.as_ref(), u1).await,
        vec![a],
        "only u1's follows"
    );
    assert_eq!(
        followed(graph.as_ref(), u2).await,
        vec![b],
        "only u2's follows"
    );
}
