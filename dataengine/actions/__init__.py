"""Corporate actions: what one is (:mod:`.schema`), how sources send them (:mod:`.wire`), how a store keeps
them (:mod:`.store`), and what they do to prices (:mod:`.factors`: the one definition of the factor maths).

Raw bars stay the record; adjustment is computed from them and these actions at read time, the way CRSP and
zipline do it, so an adjusted history never goes stale when a new split arrives.
"""
