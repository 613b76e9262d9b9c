"""Every registered balancing method is checked against its paper's defining property.

A method added to ``polytask.balancing.METHODS`` without an entry here fails the suite;
an entry names the test (``file::function``) that checks the property."""

from __future__ import annotations

import importlib

import polytask.balancing as balancing

W, A = "test_balancing_weighting", "test_balancing_aggregators"
NW, NA = "test_balancing_new_weightings", "test_balancing_new_aggregators"
PROPERTY_TESTS = {
    "ew": f"{W}::test_ew_is_plain_sum_and_weights_are_fixed",
    "weights": f"{W}::test_ew_is_plain_sum_and_weights_are_fixed",
    "uw": f"{W}::test_uw_objective_and_its_optimum",
    "dwa": f"{W}::test_dwa_weights_follow_loss_ratios",
    "rlw": f"{W}::test_rlw_reproducible_and_averages_one",
    "gradnorm": f"{W}::test_gradnorm_moves_weights_towards_equal_training_rates",
    "famo": f"{W}::test_famo_gradient_and_logit_update",
    "db_mtl": f"{W}::test_db_mtl_scales_log_gradients_to_the_largest_norm",
    "mean": f"{A}::test_mean_and_sum_are_the_rows_mean_and_sum",
    "sum": f"{A}::test_mean_and_sum_are_the_rows_mean_and_sum",
    "mgda": f"{A}::test_mgda_is_min_norm_point_of_hull",
    "pcgrad": f"{A}::test_pcgrad_two_conflicting_gradients_sum_of_projections",
    "graddrop": f"{A}::test_graddrop_keeps_one_sign_per_coordinate_by_purity",
    "gradvac": f"{A}::test_gradvac_moves_pair_cosine_to_target",
    "cagrad": f"{A}::test_cagrad_solves_its_dual_and_stays_in_the_ball",
    "imtl_g": f"{A}::test_imtl_g_equal_projections_on_unit_gradients",
    "nash_mtl": f"{A}::test_nash_mtl_weights_solve_bargaining_equation",
    "aligned_mtl": f"{A}::test_aligned_mtl_aligned_gramian_has_condition_number_one",
    "upgrad": f"{A}::test_dual_cone_directions_do_not_conflict",
    "dualproj": f"{A}::test_dual_cone_directions_do_not_conflict",
    "config": f"{A}::test_config_equal_cosine_with_every_gradient",
    "stch": f"{NW}::test_stch_tends_to_the_max_loss_as_mu_goes_to_zero",
    "gls": f"{NW}::test_gls_is_the_geometric_mean_and_weighs_by_inverse_loss",
    "imtl_l": f"{NW}::test_imtl_l_equalises_the_scaled_losses",
    "auto_lambda": f"{NW}::test_auto_lambda_hypergradient_is_the_papers_finite_difference",
    "imtl": f"{NA}::test_imtl_weighs_scaled_gradients_with_equal_projections",
    "fairgrad": f"{NA}::test_fairgrad_alpha_one_is_nash_mtl_and_solves_its_fairness_condition",
    "excess_mtl": f"{NA}::test_excess_mtl_weighs_up_the_larger_excess_risk",
    "sdmgrad": f"{NA}::test_sdmgrad_lambda_zero_is_mgda_and_solves_its_quadratic",
    "modo": f"{NA}::test_modo_one_projected_step_and_its_fixed_point",
    "moco": f"{NA}::test_moco_tracks_the_gradients_and_weighs_the_tracked_ones",
    "krum": f"{NA}::test_krum_and_trimmed_mean_ignore_an_outlier_row",
    "trimmed_mean": f"{NA}::test_krum_and_trimmed_mean_ignore_an_outlier_row",
    "rgw": f"{NA}::test_rgw_weights_are_random_points_of_the_simplex",
}


def test_every_registered_method_has_a_property_test() -> None:
    missing = sorted(set(balancing.METHODS) - set(PROPERTY_TESTS))
    assert not missing, f"no defining-property test named for {missing}"
    assert not set(PROPERTY_TESTS) - set(balancing.METHODS), "entries for unknown methods"
    for name, ref in PROPERTY_TESTS.items():
        module, function = ref.split("::")
        found = getattr(importlib.import_module(f"tests.{module}"), function, None)
        assert callable(found), f"{name}: {ref} does not exist"
