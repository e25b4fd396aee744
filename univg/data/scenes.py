"""The ten mig-synth task builders: each draws one multi-image scene and its question.

Every builder makes its answer unique from the pixels (see each docstring) and avoids cues that
would let one image alone give the answer (counts, sizes or positions that differ only for the
target). Target image positions vary where the task allows it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from univg.data.draw import norm_box
from univg.data.layout import (
    SIZES,
    STRIPED_SHARE,
    Context,
    Frame,
    Sample,
    pick,
    say,
    scene_object,
)


def build_diff(ctx: Context, shifted: bool = False) -> Sample:
    """Image 2 = image 1 with exactly one change: an object added, or one object's colour or shape
    changed in place (the new pair appears nowhere in image 1). view_diff also moves the camera."""
    rng, count = ctx.rng, 1 + ctx.distractors
    grid = ctx.grid(count + 1)
    cells = ctx.cells(grid, count + 1)
    before = ctx.fill(grid, ctx.fresh_pairs(count, set()), cells[:count])
    taken = {o.pair for o in before}
    change = pick(rng, ("added", "colour", "shape"))
    after = list(before)
    if change == "added":
        index = len(after)
        after.append(ctx.place(grid, cells[count], *ctx.pair(taken)))
        reference, before_obj = None, None
    else:
        index = int(rng.integers(count))
        old = before[index]
        if change == "colour":
            new = replace(old, colour=ctx.pair(taken, shape=old.shape, not_colour=old.colour)[1])
        else:
            new = replace(old, shape=ctx.pair(taken, colour=old.colour, not_shape=old.shape)[0])
        after[index] = new
        reference, before_obj = (1, index), scene_object(old, ctx.size)
    facts: dict[str, Any] = {"change": change, "before": before_obj}
    view = "original"
    if shifted:
        after, shift = ctx.shifted_view(after)
        facts["shift_px"], view = shift, "shifted"
    templates = VIEW_DIFF_QUESTIONS if shifted else DIFF_QUESTIONS
    return Sample([Frame(before), Frame(after, view=view)], say(rng, templates), (2, index), reference, facts)


def build_view_diff(ctx: Context) -> Sample:
    return build_diff(ctx, shifted=True)


def build_region(ctx: Context) -> Sample:
    """A box drawn (and given as coordinates) on image 1; image 2 repeats that object and, as
    decoys, other objects of image 1, so only the box says which one is meant."""
    rng, count = ctx.rng, 1 + ctx.distractors
    grid = ctx.grid(count)
    first = ctx.fill(grid, ctx.fresh_pairs(count, set()))
    key = int(rng.integers(count))
    others = [o for i, o in enumerate(first) if i != key]
    shared = [others[i] for i in rng.permutation(len(others))[: (ctx.distractors + 1) // 2]]
    fresh = ctx.fresh_pairs(ctx.distractors - len(shared), {o.pair for o in first})
    specs = [(first[key].pair, first[key].texture)] + [(o.pair, o.texture) for o in shared]
    specs += [(p, None) for p in fresh]
    order = [int(i) for i in rng.permutation(len(specs))]
    second = ctx.fill(grid, [specs[i][0] for i in order], textures=[specs[i][1] for i in order])
    box = norm_box(first[key], ctx.size, ctx.size)
    coords = f"<|box_start|>({box[0]},{box[1]}),({box[2]},{box[3]})<|box_end|>"
    question = say(rng, REGION_QUESTIONS, box=coords)
    frames = [Frame(first, marks=[("box", key)]), Frame(second)]
    return Sample(frames, question, (2, order.index(0)), (1, key), {"mark": "box", "box": box})


def build_correspondence(ctx: Context) -> Sample:
    """A black dot on one object of image 1; image 2 shows it moved and rescaled, next to another
    object of image 1 and a near miss (same colour or same shape)."""
    rng, count = ctx.rng, 1 + ctx.distractors
    grid = ctx.grid(count)
    first = ctx.fill(grid, ctx.fresh_pairs(count, set()))
    key = int(rng.integers(count))
    target = first[key]
    specs: list[tuple[tuple[str, str], str | None]] = [(target.pair, target.texture)]
    others = [o for i, o in enumerate(first) if i != key]
    if ctx.distractors >= 1 and others:
        copied = pick(rng, others)
        specs.append((copied.pair, copied.texture))
    taken = {o.pair for o in first}
    specs += [(p, None) for p in ctx.fresh_pairs(count - len(specs), taken, target.pair, 1.0)]
    order = [int(i) for i in rng.permutation(len(specs))]
    sizes = [pick(rng, [s for s in SIZES if s != target.size]) if i == 0 else None for i in order]
    second = ctx.fill(grid, [specs[i][0] for i in order], sizes=sizes, textures=[specs[i][1] for i in order])
    facts = {"mark": "dot", "size_before": target.size, "size_after": second[order.index(0)].size}
    frames = [Frame(first, marks=[("dot", key)]), Frame(second)]
    return Sample(frames, say(rng, CORRESPONDENCE_QUESTIONS), (2, order.index(0)), (1, key), facts)


def build_group_grounding(ctx: Context) -> Sample:
    """A described (colour, shape) appears in exactly one of 3-5 images; the others hold near
    misses, and every image holds the same number of objects."""
    rng, count = ctx.rng, 1 + ctx.distractors
    grid, n = ctx.grid(count), ctx.n_images(3, 5)
    goal = ctx.pair()
    target_image = int(rng.integers(n))
    frames = []
    for image in range(n):
        if image == target_image:
            pairs = [goal] + ctx.fresh_pairs(count - 1, {goal}, goal, 0.5)
        else:
            pairs = ctx.fresh_pairs(count, {goal}, goal, 0.8)
        order = [int(i) for i in rng.permutation(count)]
        frames.append(Frame(ctx.fill(grid, [pairs[i] for i in order])))
        if image == target_image:
            index = order.index(0)
    description = f"the {goal[1]} {goal[0]}"
    question = say(rng, GROUP_QUESTIONS, description=description)
    return Sample(frames, question, (target_image + 1, index), None, {"description": description})


def build_reasoning(ctx: Context) -> Sample:
    """Image 1: one clearly largest (or smallest) shape; image 2: exactly one shape shares its
    colour (or shape); the others borrow attributes of image 1's other shapes."""
    rng, count = ctx.rng, 1 + ctx.distractors
    grid = ctx.grid(count)
    extreme, attribute = pick(rng, ("largest", "smallest")), pick(rng, ("colour", "shape"))
    key_size, other_size = ("large", "small") if extreme == "largest" else ("small", "large")
    pairs = ctx.fresh_pairs(count, set())
    key = int(rng.integers(count))
    first = ctx.fill(grid, pairs, sizes=[key_size if i == key else other_size for i in range(count)])
    slot = 0 if attribute == "shape" else 1
    wanted = pairs[key][slot]
    borrowed = [p[slot] for i, p in enumerate(pairs) if i != key and p[slot] != wanted]
    target = ctx.pair(**{attribute: wanted})
    second_pairs, taken = [target], {target}
    for index in range(count - 1):
        pin = {attribute: borrowed[index]} if index < len(borrowed) else {}
        chosen = ctx.pair(taken, **pin, **{f"not_{attribute}": wanted})
        second_pairs.append(chosen)
        taken.add(chosen)
    order = [int(i) for i in rng.permutation(count)]
    second = ctx.fill(grid, [second_pairs[i] for i in order])
    rule = f"same {attribute} as the {extreme} shape in image 1"
    question = say(rng, REASONING_QUESTIONS, attribute=attribute, extreme=extreme)
    facts = {"rule": rule, "attribute": attribute, "extreme": extreme, "value": wanted}
    return Sample([Frame(first), Frame(second)], question, (2, order.index(0)), (1, key), facts)


def build_common_object(ctx: Context) -> Sample:
    """Exactly one (shape, colour) pair is in every image; no other pair is in all of them."""
    rng, count = ctx.rng, 1 + ctx.distractors
    grid, n = ctx.grid(count), ctx.n_images(2, 5)
    shared = ctx.pair()
    texture = "striped" if rng.random() < STRIPED_SHARE else "solid"
    in_all_so_far: set[tuple[str, str]] = set()  # other pairs present in every image so far
    frames, indices = [], []
    for image in range(n):
        avoid = {shared} | (in_all_so_far if image == n - 1 else set())
        pairs = [shared] + ctx.fresh_pairs(count - 1, avoid, shared, 0.5)
        in_all_so_far = set(pairs[1:]) if image == 0 else in_all_so_far & set(pairs[1:])
        order = [int(i) for i in rng.permutation(count)]
        textures = [texture if i == 0 else None for i in order]
        frames.append(Frame(ctx.fill(grid, [pairs[i] for i in order], textures=textures)))
        indices.append(order.index(0))
    k = int(rng.integers(n))
    question = say(rng, COMMON_QUESTIONS, k=k + 1)
    return Sample(frames, question, (k + 1, indices[k]), None, {"shared": {"shape": shared[0], "colour": shared[1]}})


def build_multi_view(ctx: Context) -> Sample:
    """Image 2 is image 1 mirrored left-right or seen from a shifted camera; the question names an
    object by its grid position in image 1, and the transform is not stated."""
    rng, count = ctx.rng, 1 + ctx.distractors
    grid = ctx.grid(count)
    cells = ctx.cells(grid, count)
    first = ctx.fill(grid, ctx.fresh_pairs(count, set()), cells)
    key = int(rng.integers(count))
    transform = pick(rng, ("mirrored", "shifted"))
    second = ctx.mirrored_view(first) if transform == "mirrored" else ctx.shifted_view(first)[0]
    position = ctx.position_name(grid, cells[key])
    question = say(rng, MULTI_VIEW_QUESTIONS, position=position)
    facts = {"transform": transform, "position": position}
    return Sample([Frame(first), Frame(second, view=transform)], question, (2, key), (1, key), facts)


def build_object_tracking(ctx: Context) -> Sample:
    """3-5 frames: one object moves steadily from one grid cell to the next one, the rest stay
    still in the other cells; every frame looks like an ordinary layout on its own."""
    rng, statics = ctx.rng, ctx.distractors
    grid, n = ctx.grid(statics + 2), ctx.n_images(3, 5)
    direction = pick(rng, ("right", "left", "down", "up"))
    step = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}[direction]
    starts = [c for c in range(grid * grid)
              if 0 <= c // grid + step[0] < grid and 0 <= c % grid + step[1] < grid]
    start = pick(rng, starts)
    end = start + step[0] * grid + step[1]
    free = [c for c in ctx.cells(grid, grid * grid) if c not in (start, end)][:statics]
    pairs = ctx.fresh_pairs(statics + 1, set())
    mover_a = ctx.place(grid, start, *pairs[0])
    mover_b = ctx.place(grid, end, *pairs[0], size=mover_a.size, texture=mover_a.texture)
    still = ctx.fill(grid, pairs[1:], free)
    slot = int(rng.integers(statics + 1))
    frames = []
    for t in range(n):
        share = t / (n - 1)
        mover = replace(mover_a, x=round(mover_a.x + share * (mover_b.x - mover_a.x)),
                        y=round(mover_a.y + share * (mover_b.y - mover_a.y)))
        frames.append(Frame(still[:slot] + [mover] + still[slot:], view="frame"))
    k = n if rng.random() < 0.7 else int(rng.integers(1, n))
    question = say(rng, TRACKING_QUESTIONS, k=k)
    facts = {"track": [[t + 1, slot] for t in range(n)], "direction": direction}
    return Sample(frames, question, (k, slot), None, facts)


def build_refer_grounding(ctx: Context) -> Sample:
    """The question names an image and an object; the same object also sits in other images, so
    the image named matters; the named image holds near misses."""
    rng, count = ctx.rng, 1 + ctx.distractors
    grid, n = ctx.grid(count), ctx.n_images(2, 6)
    goal = ctx.pair()
    target_image = int(rng.integers(n))
    decoys = [i for i in range(n) if i != target_image and rng.random() < 0.7]
    if not decoys:
        decoys = [pick(rng, [i for i in range(n) if i != target_image])]
    frames = []
    for image in range(n):
        holds_goal = image == target_image or image in decoys
        pairs = ([goal] + ctx.fresh_pairs(count - 1, {goal}, goal, 0.7)) if holds_goal \
            else ctx.fresh_pairs(count, {goal}, goal, 0.5)
        order = [int(i) for i in rng.permutation(count)]
        frames.append(Frame(ctx.fill(grid, [pairs[i] for i in order])))
        if image == target_image:
            index = order.index(0)
    expression = f"the {goal[1]} {goal[0]}"
    question = say(rng, REFER_QUESTIONS, expression=expression, k=target_image + 1)
    return Sample(frames, question, (target_image + 1, index), None, {"expression": expression})


DIFF_QUESTIONS = (
    "What changed between image 1 and image 2? Locate it in image 2.",
    "Image 2 is image 1 after one change. Find the changed object in image 2.",
    "Find the object in image 2 that differs from image 1.",
)
VIEW_DIFF_QUESTIONS = (
    "Image 2 shows image 1 from a slightly moved camera, with one change. Find the change in image 2.",
    "The camera moved a little between image 1 and image 2, and one object changed. Locate it in image 2.",
    "Ignoring the small view shift, what changed from image 1 to image 2? Find it in image 2.",
)
REGION_QUESTIONS = (
    "The object in {box} of image 1 also appears in image 2. Locate it in image 2.",
    "Find in image 2 the object boxed at {box} in image 1.",
    "Image 1 has a box around {box}. Where is that object in image 2?",
)
CORRESPONDENCE_QUESTIONS = (
    "Find in image 2 the object marked with a black dot in image 1.",
    "The dotted object in image 1 moved and changed size. Locate it in image 2.",
    "Which object in image 2 is the one with the dot in image 1? Find it.",
)
GROUP_QUESTIONS = (
    "Which image shows {description}? Locate it.",
    "Find {description} among these images.",
    "One of the images contains {description}. Find it.",
)
REASONING_QUESTIONS = (
    "Find the shape in image 2 with the same {attribute} as the {extreme} shape in image 1.",
    "Look at the {extreme} shape in image 1. Locate the shape in image 2 that has its {attribute}.",
    "Which shape in image 2 shares its {attribute} with the {extreme} shape in image 1? Find it.",
)
COMMON_QUESTIONS = (
    "These images share one object. Locate it in image {k}.",
    "One object appears in every image. Find it in image {k}.",
    "Find the object common to all images in image {k}.",
)
MULTI_VIEW_QUESTIONS = (
    "Image 2 shows the scene of image 1 from another view. Locate in image 2 the object that is {position} in image 1.",
    "Find in image 2 the object at the {position} of image 1.",
    "Same scene, another view: where in image 2 is the {position} object of image 1?",
)
TRACKING_QUESTIONS = (
    "These are video frames. Locate the moving object in frame {k}.",
    "One object moves across the frames while the rest stay still. Find it in frame {k}.",
    "Track the object that moves: where is it in frame {k}?",
)
REFER_QUESTIONS = (
    "Find {expression} in image {k}.",
    "In image {k}, locate {expression}.",
    "Where is {expression} in image {k}?",
)

BUILDERS = {
    "common_object": build_common_object,
    "correspondence": build_correspondence,
    "diff": build_diff,
    "group_grounding": build_group_grounding,
    "multi_view": build_multi_view,
    "object_tracking": build_object_tracking,
    "reasoning": build_reasoning,
    "refer_grounding": build_refer_grounding,
    "region": build_region,
    "view_diff": build_view_diff,
}
