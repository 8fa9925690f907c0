"""English sentences and sentence pairs written for the kit, as real text for the zoo's encoders.

Twenty topics of four sentences each: sentences ``a``/``a2`` and ``b``/``b2`` of a topic say
the same thing in other words. From them:

- ``SENTENCES``: all 80 sentences (variable length: 6 to 30 tokens);
- ``pairs()``: (left, right, kind) with kind ``paraphrase`` (same meaning), ``related``
  (same topic, different statement) and ``unrelated`` (different topics): the similarity of a
  good encoder ranks paraphrase > related > unrelated, which is what a quantized variant must keep;
- ``passages(n_tokens)``: the sentences of a topic run together, long enough to fill a
  sequence of 128 tokens of real text (for timing at a fixed length).
"""

from __future__ import annotations

TOPICS: dict[str, tuple[str, str, str, str]] = {
    # (a, paraphrase of a, b, paraphrase of b)
    "weather": (
        "Heavy rain is expected across the north of the country tomorrow afternoon.",
        "Forecasters say the northern regions will get a lot of rain tomorrow after lunch.",
        "The summer was the hottest one recorded in the last fifty years.",
        "No summer in the past half century has been as warm as this one.",
    ),
    "cooking": (
        "Let the dough rest in the fridge for an hour before you roll it out.",
        "Before rolling the pastry, chill it for sixty minutes.",
        "She added a pinch of salt and a spoonful of honey to the sauce.",
        "A little salt and some honey went into her sauce.",
    ),
    "football": (
        "The home team scored twice in the last ten minutes and won the match.",
        "Two late goals gave the hosts the victory.",
        "The striker was injured during training and will miss the final.",
        "After getting hurt in practice, the forward cannot play in the cup final.",
    ),
    "programming": (
        "The function crashes when the input list is empty.",
        "Passing an empty list makes the routine fail with an error.",
        "We rewrote the parser so that it reads the file only once.",
        "The new parser makes a single pass over the file.",
    ),
    "medicine": (
        "The doctor prescribed antibiotics for the infection in his ear.",
        "He was given antibiotics to treat an ear infection.",
        "Regular exercise lowers the risk of heart disease.",
        "People who exercise often are less likely to develop heart problems.",
    ),
    "travel": (
        "Our flight to Lisbon was delayed by three hours because of fog.",
        "Fog held up the plane to Lisbon for three hours.",
        "The hotel room had a small balcony overlooking the harbour.",
        "From the balcony of our room we could see the port.",
    ),
    "finance": (
        "The central bank raised interest rates to slow down inflation.",
        "To fight rising prices, the central bank increased its rates.",
        "Shares of the company fell sharply after the disappointing earnings report.",
        "The firm's stock dropped a lot when its weak results came out.",
    ),
    "music": (
        "The orchestra played a symphony by Beethoven in the old concert hall.",
        "A Beethoven symphony was performed by the orchestra in the historic hall.",
        "He has been learning to play the guitar for two years.",
        "For the past two years he has been taking guitar lessons.",
    ),
    "pets": (
        "The cat sleeps on the windowsill every afternoon.",
        "Each afternoon the cat naps by the window.",
        "Our dog barks loudly whenever the postman comes to the door.",
        "Every time the mail carrier arrives, the dog starts barking.",
    ),
    "gardening": (
        "Water the tomato plants early in the morning before it gets hot.",
        "Tomatoes should be watered at dawn, before the heat of the day.",
        "The roses need to be pruned at the end of winter.",
        "Cut back the rose bushes when winter is almost over.",
    ),
    "space": (
        "The probe sent back detailed photographs of the surface of Mars.",
        "Clear pictures of the Martian ground were transmitted by the spacecraft.",
        "Astronomers discovered a planet orbiting a nearby star.",
        "A new planet was found circling a star close to our sun.",
    ),
    "education": (
        "The students must hand in their essays by Friday.",
        "Friday is the deadline for the pupils to submit their essays.",
        "The university is opening a new library next year.",
        "A new library will open on the campus next year.",
    ),
    "transport": (
        "The train to the airport leaves every fifteen minutes.",
        "There is a train to the airport four times an hour.",
        "Traffic on the main road was blocked after an accident.",
        "A crash stopped all the cars on the highway.",
    ),
    "technology": (
        "The new phone has a larger battery and a faster processor.",
        "This phone comes with a bigger battery and a quicker chip.",
        "Please restart your computer to finish installing the update.",
        "The update will be complete once you reboot the machine.",
    ),
    "history": (
        "The castle was built in the twelfth century to defend the valley.",
        "In the 1100s a fortress was erected to protect the valley.",
        "The treaty ended a war that had lasted thirty years.",
        "Thirty years of fighting came to an end with the signing of the treaty.",
    ),
    "shopping": (
        "The supermarket on the corner is closed on Sundays.",
        "On Sundays the grocery store at the corner does not open.",
        "I returned the shoes because they were too small.",
        "The shoes did not fit, so I took them back to the shop.",
    ),
    "environment": (
        "Plastic waste is polluting the oceans and harming sea life.",
        "Marine animals suffer as plastic rubbish fills the seas.",
        "The city planted thousands of trees to clean the air.",
        "Thousands of new trees were planted to improve air quality in town.",
    ),
    "work": (
        "The meeting has been moved from Monday to Wednesday morning.",
        "We rescheduled Monday's meeting to Wednesday morning.",
        "She was promoted to head of the sales department.",
        "They made her the manager of the sales team.",
    ),
    "family": (
        "My grandmother tells wonderful stories about her childhood on the farm.",
        "Grandma loves to describe growing up on a farm.",
        "The children built a sandcastle on the beach.",
        "On the beach the kids made a castle out of sand.",
    ),
    "health": (
        "Drinking enough water during the day helps you stay focused.",
        "Staying hydrated keeps your concentration up.",
        "Getting eight hours of sleep improves your mood.",
        "You feel better when you sleep for eight hours a night.",
    ),
}

SENTENCES: tuple[str, ...] = tuple(s for group in TOPICS.values() for s in group)


def pairs() -> list[tuple[str, str, str]]:
    """(left, right, kind) for every topic: 2 paraphrase, 2 related and 2 unrelated pairs (120 in all)."""
    names = list(TOPICS)
    out = []
    for i, name in enumerate(names):
        a, a2, b, b2 = TOPICS[name]
        other = TOPICS[names[(i + 7) % len(names)]]
        far = TOPICS[names[(i + 13) % len(names)]]
        out += [(a, a2, "paraphrase"), (b, b2, "paraphrase"), (a, b, "related"), (a2, b2, "related"),
                (a, other[2], "unrelated"), (b2, far[1], "unrelated")]
    return out


def passages(min_words: int = 110) -> list[str]:
    """One passage per topic: its sentences (then the next topics') run together to >= ``min_words``.

    About 110 words make at least 128 WordPiece tokens, so a passage fills a 128-token sequence.
    """
    names = list(TOPICS)
    out = []
    for i in range(len(names)):
        words: list[str] = []
        j = i
        while len(words) < min_words:
            for sentence in TOPICS[names[j % len(names)]]:
                words += sentence.split()
            j += 1
        out.append(" ".join(words))
    return out
