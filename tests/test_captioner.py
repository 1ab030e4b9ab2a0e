"""helpers.captioner: the masked loss, the clipped train step, and fine-tuning a pretrained
encoder (keras.applications with random weights: tests never download)."""

import numpy as np
import pytest


def test_masked_loss_and_accuracy_equal_a_numpy_reference_that_skips_padding():
    import tensorflow as tf

    from helpers.teacher_forcing import masked_loss_and_accuracy

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 5, 7))
    targets = np.array([[4, 5, 2, 0, 0], [6, 2, 0, 0, 0], [3, 3, 4, 5, 2]])
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = targets != 0
    picked = np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
    loss, accuracy = masked_loss_and_accuracy(tf.constant(targets), tf.constant(logits))
    assert abs(float(loss) - (-picked[real].mean())) < 1e-12
    assert abs(float(accuracy) - (logits.argmax(-1) == targets)[real].mean()) < 1e-12
    # more padding (and whatever the model says there) changes nothing
    wider = np.concatenate([logits, rng.normal(size=(3, 4, 7))], 1)
    loss2, accuracy2 = masked_loss_and_accuracy(tf.constant(np.pad(targets, ((0, 0), (0, 4)))), tf.constant(wider))
    assert abs(float(loss2) - float(loss)) < 1e-12 and float(accuracy2) == float(accuracy)


def tiny_batch(images_shape, vocab=12, seed=0):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, size=images_shape).astype("float32")
    tokens = np.array([[1, 5, 6, 7, 2, 0], [1, 8, 9, 2, 0, 0], [1, 4, 4, 10, 11, 2], [1, 3, 2, 0, 0, 0]], np.int32)
    return tf.constant(images), tf.constant([0, 0, 1, 1]), tf.constant(tokens)


def gradients(model, batch):
    """The masked loss's gradient by an independent tape, variable by variable (by path)."""
    import tensorflow as tf

    from helpers.teacher_forcing import masked_loss_and_accuracy

    with tf.GradientTape() as tape:
        loss, _ = masked_loss_and_accuracy(batch[2][:, 1:], model(*batch, training=True))
    variables = model.trainable_variables
    return {v.path: tf.convert_to_tensor(g).numpy() for v, g in zip(variables, tape.gradient(loss, variables))}


def test_the_train_step_clips_by_the_global_norm_of_the_tapes_gradients():
    import keras

    from helpers.captioner import ShowAndTell
    from helpers.teacher_forcing import make_train_step

    batch = tiny_batch((2, 16))
    model = ShowAndTell(12, embed_dim=8, hidden=8, encoder=None)
    model(*batch)
    grads = gradients(model, batch)
    norm = np.sqrt(sum((g**2).sum() for g in grads.values()))
    clip = norm / 4  # the clipping bites: every gradient shrinks by 4
    before = {v.path: v.numpy() for v in model.trainable_variables}
    _, _, reported = make_train_step(model, keras.optimizers.SGD(0.5), clip_norm=clip)(*batch)
    assert abs(float(reported) - norm) < 1e-5 * norm  # the norm before clipping
    for v in model.trainable_variables:
        np.testing.assert_allclose(v.numpy(), before[v.path] - 0.5 * grads[v.path] / 4, rtol=1e-4, atol=1e-6)


def test_unfreeze_top_leaves_exactly_the_top_weighted_layers_trainable_and_batch_norm_frozen():
    import keras

    from helpers.features import build_encoder, unfreeze_top

    encoder = build_encoder("mobilenet_v3_small", weights=None, input_size=32)
    encoder.trainable = False  # as after a first, frozen phase
    names = unfreeze_top(encoder, 4)
    backbone = next(layer for layer in encoder.layers if isinstance(layer, keras.Model))
    expected = [
        layer.name
        for layer in backbone.layers
        if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    ][-4:]
    assert names == expected and names[-1] == "conv_1"
    trainable = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    assert trainable == set(expected)
    assert len(encoder.trainable_variables) == sum(len(backbone.get_layer(n).trainable_variables) for n in names)
    assert unfreeze_top(encoder, 0) == [] and encoder.trainable_variables == []
    assert len(unfreeze_top(encoder, 10_000)) == sum(
        1 for layer in backbone.layers if layer.weights and not isinstance(layer, keras.layers.BatchNormalization)
    )


def test_fine_tuning_moves_only_the_unfrozen_layers_at_the_encoders_own_rate():
    import keras

    from helpers.captioner import ShowAndTell
    from helpers.teacher_forcing import make_train_step

    batch = tiny_batch((2, 32, 32, 3))
    # ResNet50: its residual paths carry a gradient even with random weights (MobileNetV3's vanishes)
    model = ShowAndTell(
        12,
        embed_dim=8,
        hidden=8,
        encoder="resnet50",
        image_size=32,
        image_as="state",
        fine_tune=2,
        encoder_weights=None,
    )
    model(*batch)
    tuned = {v.path for v in model.cnn.trainable_variables}
    assert tuned and len(model.fine_tuned_layers) == 2
    grads = gradients(model, batch)
    before = {v.path: v.numpy() for v in model.weights}  # batch-norm statistics included
    step = make_train_step(
        model, keras.optimizers.SGD(0.1), clip_norm=1e9, encoder_optimizer=keras.optimizers.SGD(0.01)
    )
    step(*batch)
    for v in model.weights:
        if v.path in tuned:
            expected = before[v.path] - 0.01 * grads[v.path]
        elif v.path in grads:  # the decoder
            expected = before[v.path] - 0.1 * grads[v.path]
        else:  # frozen encoder layers and batch-norm statistics
            np.testing.assert_array_equal(v.numpy(), before[v.path])
            continue
        np.testing.assert_allclose(v.numpy(), expected, rtol=1e-4, atol=1e-7, err_msg=v.path)
        assert not np.array_equal(v.numpy(), before[v.path]) or not grads[v.path].any()
    assert max(np.abs(grads[p]).max() for p in tuned) > 1e-3  # the encoder's share is no rounding error


def test_fine_tuning_asks_for_a_pretrained_encoder():
    from helpers.captioner import ShowAndTell

    with pytest.raises(ValueError, match="fine_tune is for a pretrained encoder"):
        ShowAndTell(12, encoder="small_cnn", fine_tune=3)
    with pytest.raises(ValueError, match="encoder must be 'small_cnn', None"):
        ShowAndTell(12, encoder="alexnet")


def test_grid_readout_is_one_dense_layer_per_cell_with_coordinates_then_the_max():
    import numpy as np

    from helpers.captioner import GridReadout
    from helpers.features import coordinate_channels

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    layer = GridReadout(5)
    out = np.asarray(layer(x))
    kernel, bias = layer.cell.get_weights()
    cells = np.concatenate([x, np.broadcast_to(coordinate_channels(4), (2, 4, 4, 2))], axis=-1)
    expected = np.maximum(cells @ kernel + bias, 0).max(axis=(1, 2))
    assert out.shape == (2, 5) and np.allclose(out, expected, atol=1e-5)
    # the same weights everywhere: without the coordinates' weights, moving the content moves nothing
    layer.cell.set_weights([np.concatenate([kernel[:3], np.zeros((2, 5), "float32")]), bias])
    shifted = np.roll(x, (1, 2), axis=(1, 2))
    assert np.allclose(np.asarray(layer(x)), np.asarray(layer(shifted)), atol=1e-5)
    layer.cell.set_weights([kernel, bias])  # with them, where things are counts
    assert not np.allclose(np.asarray(layer(x)), np.asarray(layer(shifted)), atol=1e-3)


@pytest.mark.parametrize("image_as", ["input", "state"])
@pytest.mark.parametrize("image_at_output", [False, True])
def test_decoding_step_by_step_gives_the_teacher_forced_log_probs(image_as, image_at_output):
    import keras
    from keras import ops

    from helpers.captioner import ShowAndTell

    images, image_index, tokens = tiny_batch((2, 32, 32, 3))
    keras.utils.set_random_seed(0)
    model = ShowAndTell(
        12,
        embed_dim=8,
        hidden=8,
        image_size=32,
        cnn_width=4,
        cnn_blocks=3,
        cnn_top_convs=1,
        image_as=image_as,
        image_at_output=image_at_output,
    )
    expected = ops.convert_to_numpy(ops.log_softmax(model(images, image_index, tokens), axis=-1))
    state = model.initial_state(ops.take(images, image_index, axis=0))
    assert len(state) == (3 if image_at_output else 2)
    tokens = tokens.numpy()
    for t in range(tokens.shape[1] - 1):
        log_probs, state = model.step(tokens[:, t], state)
        real = tokens[:, t + 1] != 0
        np.testing.assert_allclose(np.asarray(log_probs)[real], expected[real, t], rtol=1e-4, atol=1e-5)
    if image_at_output:  # the image reaches every word, not only through the LSTM's memory
        blind, _ = model.step(tokens[:, 2], (*state[:2], ops.zeros_like(state[2])))
        assert np.abs(np.asarray(blind) - np.asarray(model.step(tokens[:, 2], state)[0])).max() > 1e-3
