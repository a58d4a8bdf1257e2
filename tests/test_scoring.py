"""Pure scoring functions on hand-made tensors."""
import torch

from ov_eva import scoring


def test_text_scores_are_scaled_cosines():
    feats = torch.zeros(1, 2, 1, 2)
    feats[0, :, 0, 0] = torch.tensor([1., 0.])
    feats[0, :, 0, 1] = torch.tensor([0., 1.])
    text = torch.tensor([[1., 0.], [0.6, 0.8]])
    got = scoring.text_scores(feats, text, logit_scale=10.)
    assert got.shape == (1, 2, 1, 2)
    torch.testing.assert_close(got[0, :, 0, 0], torch.tensor([10., 6.]))
    torch.testing.assert_close(got[0, :, 0, 1], torch.tensor([0., 8.]))


def test_class_scores_take_max_over_synonyms():
    scores = torch.tensor([1., 5., 2., -3.]).view(1, 4, 1,
                                                  1).repeat(2, 1, 1, 3)
    text_to_class = torch.tensor([0, 1, 1, 2])
    got = scoring.class_scores(scores, text_to_class, 3)
    assert got.shape == (2, 3, 1, 3)
    torch.testing.assert_close(got[1, :, 0, 2], torch.tensor([1., 5., -3.]))


def test_background_threshold():
    logits = torch.tensor([[0., 0., 0.], [0., 5., 0.]]).T.reshape(1, 3, 1, 2)
    # pixel 0: uniform (top prob 1/3); pixel 1: class 1 at ~0.99
    out = scoring.apply_background_threshold(logits, prob_thd=0.5, bg_idx=2)
    assert out.argmax(1).tolist() == [[[2, 1]]]
    torch.testing.assert_close(out[..., 1], logits[..., 1])
    assert scoring.apply_background_threshold(logits, 0.0) is logits
    low = scoring.apply_background_threshold(logits, prob_thd=0.2)
    torch.testing.assert_close(low, logits)  # no pixel below 0.2
