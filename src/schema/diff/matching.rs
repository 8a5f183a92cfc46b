//! Maximum bipartite matching (Kuhn's augmenting paths), to pair old members of a
//! combination with compatible new members, each used once.

/// For each left vertex, its partner among `right` vertices in one maximum matching.
///
/// The search starts from `initial` (a valid matching, left to right) and only moves its
/// pairs when that matches more vertices, so preferred pairs survive whenever they can.
pub(crate) fn maximum_matching(
    adjacency: &[Vec<usize>],
    right: usize,
    initial: &[Option<usize>],
) -> Vec<Option<usize>> {
    let mut partner_of_right: Vec<Option<usize>> = vec![None; right];
    for (left, partner) in initial.iter().enumerate() {
        if let Some(partner) = *partner {
            partner_of_right[partner] = Some(left);
        }
    }
    for left in 0..adjacency.len() {
        if initial.get(left).copied().flatten().is_some() {
            continue;
        }
        let mut visited = vec![false; right];
        augment(left, adjacency, &mut visited, &mut partner_of_right);
    }
    let mut partner_of_left = vec![None; adjacency.len()];
    for (right, left) in partner_of_right.into_iter().enumerate() {
        if let Some(left) = left {
            partner_of_left[left] = Some(right);
        }
    }
    partner_of_left
}

/// Tries to match `left`, moving earlier matches along an augmenting path. The path can be as
/// long as the combination is wide, so deep paths run on a grown stack.
fn augment(
    left: usize,
    adjacency: &[Vec<usize>],
    visited: &mut [bool],
    partner_of_right: &mut [Option<usize>],
) -> bool {
    for &right in &adjacency[left] {
        if visited[right] {
            continue;
        }
        visited[right] = true;
        let free = match partner_of_right[right] {
            None => true,
            Some(other) => stacker::maybe_grow(64 * 1024, 1024 * 1024, || {
                augment(other, adjacency, visited, partner_of_right)
            }),
        };
        if free {
            partner_of_right[right] = Some(left);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmenting_path_moves_an_earlier_match() {
        // Left 0 could take either right vertex; left 1 only right 0.
        let matching = maximum_matching(&[vec![0, 1], vec![0]], 2, &[]);
        assert_eq!(matching, vec![Some(1), Some(0)]);
    }

    #[test]
    fn unmatched_vertices_stay_unmatched() {
        let matching = maximum_matching(&[vec![0], vec![0], vec![]], 1, &[]);
        assert_eq!(matching.iter().flatten().count(), 1);
        assert_eq!(matching[2], None);
    }

    #[test]
    fn preferred_pairs_move_only_to_match_more() {
        // Left 0 prefers right 0, which left 1 also needs: the preference gives way.
        let matching = maximum_matching(&[vec![0, 1], vec![0]], 2, &[Some(0), None]);
        assert_eq!(matching, vec![Some(1), Some(0)]);
        // Nothing to gain: the preference stays although right 1 comes later.
        let matching = maximum_matching(&[vec![0, 1], vec![1]], 2, &[Some(0), None]);
        assert_eq!(matching, vec![Some(0), Some(1)]);
    }
}
