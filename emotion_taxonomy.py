"""Every emotion label the tool accepts, in one table, with what the metrics need to know about each.

Each row of ``_TABLE`` is an emotion *profile*: a canonical name, its valence (positive / negative / neutral /
ambiguous), an Ekman-style family (joy, sadness, anger, fear, disgust, surprise, neutral), an arousal level, the
aliases that resolve to it, closely related profiles, and a cue lexicon of words, stems and phrases that signal the
emotion in text.  ``normalize_emotion`` validates labels; ``emotion_profile``, ``word_cues`` and ``affinity`` are the
lookups the metrics use.
Accepted labels cover the GoEmotions 27 + neutral, Ekman's six, the 32 EmpatheticDialogues situation labels, the six
dair-ai "emotion" labels and the noun forms of the built-in scenarios.

Sources and licences: label *names* follow GoEmotions (Apache-2.0), EmpatheticDialogues (CC BY-NC 4.0; names only)
and dair-ai "emotion" (names only); the cue lexicons are hand-written for this tool from general knowledge of English
(no dataset text is copied). Sentiment values come from the VADER lexicon (vaderSentiment, MIT) at run time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from errors import UserError

VALENCES = ("positive", "negative", "neutral", "ambiguous")
FAMILIES = ("joy", "sadness", "anger", "fear", "disgust", "surprise", "neutral")

# Weight of a cue marked "~" in a lexicon: a word that leans towards the emotion but is common in other contexts.
WEAK_CUE_WEIGHT = 0.5


@dataclass(frozen=True)
class EmotionProfile:
    """What the metrics know about one emotion.

    ``name`` is the profile (cue class) name; ``arousal`` (0 calm .. 1 agitated) places the emotion on the
    circumplex's activation axis (sadness and contentment low; anger, fear and excitement high) and separates
    same-valence emotions when a text has no cue words; ``aliases`` are the other accepted labels that share the
    profile; ``related`` names profiles close enough that their cues count as strong partial evidence; ``cues`` is
    the lexicon in a compact notation: space-separated entries, ``stem*`` matches any word starting with ``stem``
    (only the longest matching stem counts), ``a_b_c`` is the phrase "a b c", ``?`` is a question mark, and a
    leading ``~`` marks a weak cue (weight ``WEAK_CUE_WEIGHT`` instead of 1).  A word listed under several profiles
    splits its weight between them.
    """

    name: str
    valence: str
    family: str
    arousal: float
    aliases: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    cues: str = ""

    @property
    def is_family_head(self) -> bool:
        """True for the basic emotion that names its own family (joy, sadness, ...): it stands for the whole family."""
        return self.name == self.family


def _p(name: str, valence: str, family: str, arousal: float, aliases: str = "", related: str = "",
       cues: str = "") -> EmotionProfile:
    return EmotionProfile(name, valence, family, arousal, tuple(aliases.split()), tuple(related.split()),
                          " ".join(cues.split()))


# A negative judgement turned on oneself ("I feel stupid", "feeling so ugly") reads as shame whatever the adjective;
# the metrics redirect these words to "shame" when they follow "feel".
SELF_BLAME_WORDS = frozenset("""stupid dumb idiotic ugly useless worthless pathetic fat gross disgusting crappy shitty
    lousy rotten terrible horrible awful bad inadequate incompetent""".split())

# The one table.  Aliases are the inflected or near-synonymous labels other label sets use (lonely -> loneliness).
_TABLE: tuple[EmotionProfile, ...] = (
    # --- joy family -------------------------------------------------------------------------------------------
    _p("joy", "positive", "joy", 0.6, "joyful happiness happy delight delighted elation elated glee cheerful ecstatic",
       "excitement contentment amusement",
       """joy joyful joyous* enjoy* happy happier happiest happily happiness glad gladly delight* cheer* elat*
       ecsta* glee gleeful bliss blissful jubila* hooray hurray yay over_the_moon on_cloud_nine
       walking_on_air good_mood best_day celebrat* wonderful wonderfully ~fantastic ~great ~fun ~lovely
       smile* smiling grin grinning beaming overjoyed rejoic* invigorat* reassur* 😀 😃 😄 😁 😊 ☺ 🙂 :) :-) =)
       :d merry jolly jovial upbeat buoyant chipper giddy euphoric radiant carefree lighthearted
       light-hearted playful exuberant delightful pleased pleasure pleasures splendid glorious festive fab
       ~lively ~vibrant ~energetic ~energized ~refreshed ~rejuvenated ~alive ~terrific ~lucky ~fortunate
       ~sociable ~adventurous ~creative ~motivated ~productive ~free ~special ~successful ~useful ~valuable
       ~worthwhile ~fine ~good ~enjoyable ~nice ~awesome ~amazing ~excellent ~welcome ~welcomed ~accepted
       ~bouncy ~divine ~delicious ~rich ~vital ~outgoing ~glamorous
       stoked_for feel_good feeling_good felt_good ~yay* ~woot ~wholesome ~favorite ~favourite ~fave
       congrat* yum yummy tasty delish ~neat"""),
    _p("amusement", "positive", "joy", 0.6, "amused humor humour", "joy",
       """lol lol* lmao lmfao rofl haha* hahaha* hehe* lulz funny funnier funniest hilarious* laugh* giggl*
       chuckl* amus* joke* joking comedy comedic witty humor humour humorous made_me_laugh cracks_me_up 😂 🤣
       😆 😹 xd entertained
       cracking_up cracked_me_up dying_of_laughter in_stitches lolz kek ~lmfao ~hah ~heh
       😅 ~😜 ~😝 ~😛 ~;) ~;-) ~:p"""),
    _p("excitement", "positive", "joy", 0.9, "excited thrill thrilled enthusiasm eagerness", "joy anticipation",
       """excit* thrill* enthusias* eager* stoked pumped hyped psyched exhilarat* can't_wait cannot_wait
       cant_wait can_not_wait woohoo woo-hoo wooo* yess* let's_go ~woo ~ecstatic 🎉 🥳 🤩 ~energetic
       ~energized ~eager ~giddy ~restless ~keen
       hype ~hyped_up"""),
    _p("anticipation", "positive", "joy", 0.6, "anticipating expectation", "excitement hope",
       """anticipat* looking_forward look_forward await* upcoming countdown any_day_now coming_up ~soon
       ~expect* ~prepar* ~planning ~plans"""),
    _p("love", "positive", "joy", 0.5, "loving affection adoration romance fondness", "caring desire trust",
       """love loved loves lovin loving lover lovers beloved adore* adoring affection* fond fondness cherish*
       darling sweetheart romantic romance passion* soulmate soul_mate kiss* cuddl* smitten infatuat*
       devoted devotion ~sweet ~hug ~hugs ~tender ~honey ~marry ~married ~wedding ~faithful ~loyal
       ~yearning ~longing ~caring ~compassionate ~passionate ❤ 😍 🥰 😘 💕 💖 💗 💓 💞 💘 ♥ <3 affectionate
       warmhearted warm-hearted sensual seductive flirt* sexy horny lustful intimate intimacy cherished
       treasured adorable cute babe hubby wifey ~naughty ~hot ~delicate ~gentle ~generous ~supportive
       ~accepted ~appreciated ~valentine ~heart ~hearts amorous charmed ~valued ~precious ~charming
       ~friendly
       passionate sweet tender caring longing adoring adorably doting lovey lovable loveable romantically ~nurtur*
       ~fond_of ~in_love ~fell_for ~crush 😻 💜 💙 💚 💛 🧡 🖤 🤍"""),
    _p("caring", "positive", "joy", 0.3, "care compassion sympathy kindness tenderness sympathetic compassionate",
       "love gratitude",
       """care caring cares cared compassion* sympath* kindness kind-hearted kindhearted gentle gently tender*
       comfort* take_care here_for_you thinking_of_you look_after looking_after watch_over nurtur*
       condolences get_well feel_better stay_safe be_careful ~kind ~support* ~hug ~hugs ~concern* ~protect*
       🤗 supportive considerate thoughtful nurturing protective benevolent generous warmth ~helpful ~soft"""),
    _p("gratitude", "positive", "joy", 0.4, "grateful thankful thankfulness appreciation", "caring joy",
       """thank* grateful* gratitude appreciat* means_a_lot means_so_much indebted ty thx tyvm ~blessed 🙏
       ~appreciated ~lucky ~fortunate ~humbled ~privileged ~gracious
       ~bless bless_you"""),
    _p("admiration", "positive", "joy", 0.5, "impressed awe respect admiring", "pride joy",
       """admir* impress* amazing amazingly awesome awesomeness brilliant brilliantly beautiful beautifully
       gorgeous stunning magnificent fabulous excellent outstanding remarkable extraordinary marvel* superb
       genius talented legend legendary masterpiece respect respected inspiring inspired inspiration
       inspirational heroic hero bravo kudos well_done hats_off good_job great_job nice_job nicely_done
       ~incredible ~cool ~nice ~perfect ~fantastic ~best ~skilled 👏 ~impressed ~amazed ~awed
       phenomenal epic stellar badass wholesome top-notch top_notch masterful flawless ~favorite* ~favourite* ~fave
       ~goat ~dope ~legit ~beast ~iconic ~killer ~slay* ~queen ~king ~gem ~classy ~majestic"""),
    _p("approval", "positive", "joy", 0.3, "approving agreement", "admiration",
       """agree agreed agrees agreeing approv* i_like i_really_like we_like ~liked ~likes good_point well_said
       fair_enough makes_sense good_idea great_idea so_true very_true this_is_the_way endorse* recommend*
       ~yes ~yeah ~yep ~yup ~exactly ~true ~correct ~indeed ~valid ~good ~fine ~okay ~ok ~solid ~fair
       ~right ~support ~supported 👍 ✅ 💯"""),
    _p("desire", "positive", "joy", 0.6, "longing yearning wanting wish lust craving", "love",
       """desir* longing yearn* crave* craving* lust* would_love dream_of dreaming if_only covet* wishing
       ~wish ~wished 🤤 ~hungry ~needy ~tempted"""),
    _p("optimism", "positive", "joy", 0.5, "optimistic positivity", "hope confidence",
       """optimis* bright_side silver_lining things_will_get_better will_get_better it_will_be_okay
       it'll_be_okay it_will_be_ok it'll_be_ok it'll_be_fine will_be_fine will_be_okay work_out works_out
       good_luck best_of_luck fingers_crossed promising looking_up better_days you_can_do you've_got_this
       you_got_this ~positive ~hopeful ~luck ~bright 🤞"""),
    _p("hope", "positive", "joy", 0.4, "hopeful hopefulness", "optimism anticipation",
       """hope hoped hopes hoping hopeful hopefully fingers_crossed pray praying prayers new_beginning
       fresh_start second_chance maybe_we_can light_at_the_end_of_the_tunnel ~wish ~faith ~someday"""),
    _p("pride", "positive", "joy", 0.6, "proud", "admiration confidence",
       """proud* pride accomplish* achiev* nailed_it triumph* earned_it well_deserved hard_work paid_off
       milestone ~did_it ~victory ~win ~won ~success* ~succeed* ~honor* ~honour* ~graduat* ~deserve* 💪 🏆
       ~accomplished ~successful ~honoured ~honored ~worthy ~confident ~smug ~superior ~virtuous ~glamorous
       ~glamourous ~elegant ~popular"""),
    _p("confidence", "positive", "joy", 0.5, "confident prepared self-assurance assurance readiness", "pride optimism",
       """confiden* self-assured self_assured assured capable believe_in_myself believe_in_you got_this brave*
       courag* fearless unshak* no_doubt ready prepar* ~determin* ~sure ~certain ~strong ~strength ~bold
       empowered unstoppable invincible ~powerful ~brave ~capable ~competent ~smart ~clever ~determined
       ~motivated ~convinced ~resolved ~intelligent"""),
    _p("trust", "positive", "joy", 0.3, "trusting faith faithful loyalty loyal", "love",
       """trust* faith* loyal* rely_on count_on reliable has_my_back got_my_back in_good_hands devot* ~honest
       ~depend* ~committed ~commitment ~safe ~secure ~sincere"""),
    _p("relief", "positive", "joy", 0.3, "relieved", "contentment gratitude",
       """relie* phew whew thank_god thank_goodness thank_heavens weight_off weight_lifted can_breathe
       breathe_again exhale dodged_a_bullet close_call all_clear came_back_clear safe_and_sound ~finally 😌
       😅 ~lighter"""),
    _p("contentment", "positive", "joy", 0.2,
       "content contented satisfaction satisfied peace peaceful calm calmness serenity serene", "joy relief",
       """content contented contentment satisf* peace peaceful* calm calmly calmer serene serenity relax* cozy
       cosy comfy tranquil* at_peace at_ease mellow pleasant* fulfil* ~comfortable ~chill ~chilled ~quiet
       ~simple ~cozy ~safe ~secure ~rested ~refreshed ~soothed grounded ~complacent ~casual ~graceful
       ~safer"""),
    # --- sadness family ---------------------------------------------------------------------------------------
    _p("sadness", "negative", "sadness", 0.3, "sad sorrow unhappiness melancholy heartbreak heartbroken hurt blue",
       "grief disappointment loneliness despair",
       """sad sadder saddest sadly sadness sadden* unhappy* sorrow* melanchol* depress* heartbr*
       broke_my_heart breaks_my_heart break_my_heart cry crying cried cries tear tears tearful teary sob
       sobbing sobbed weep* miserable misery gloom* feel_down feeling_down upset* hurt hurts hurting
       hurtful pain painful aching ache heavy_heart tragic* tragedy somber sombre dismal downcast ~down
       ~blue ~heavy ~poor ~unfortunate ~unfortunately ~awful ~terrible 😢 😭 😞 😔 ☹ 🙁 💔 :( :-( :'( glum
       dejected despondent downhearted disheartened discourag* dispirited crestfallen forlorn woeful weepy
       mournful sorrowful low-spirited troubled lethargic listless sluggish groggy unmotivated apathetic
       weary drained wrung_out burdened pitiful wounded unloved rejected neglected ignored defeated
       discontent* feel_hated feeling_hated felt_hated feel_stupid feeling_stupid felt_stupid feel_rotten
       resigned punished chastised beaten_down devoid_of_hope unimportant insignificant deprived victimized
       ~lame ~low ~lost ~tired ~exhausted ~bored ~boring ~dull ~lazy ~useless ~pathetic ~hollow ~distraught
       morose pained damaged abused tortured ~lousy ~broke ~repressed ~disadvantaged ~blamed ~unpleasant
       ~emotional"""),
    _p("grief", "negative", "sadness", 0.4, "grieving bereavement mourning", "sadness loneliness despair",
       """grief griev* mourn* bereave* passed_away pass_away died dying death funeral* loss
       sorry_for_your_loss condolences rest_in_peace rip widow* orphan* miss_him miss_her miss_them
       no_longer_with_us memorial eulogy casket coffin burial ~dead ~lost ~lose ~losing ~miss ~missing
       ~misses ~missed ~gone ~buried ~passed"""),
    _p("despair", "negative", "sadness", 0.5, "devastated devastation hopelessness hopeless desperation",
       "grief sadness",
       """despair* devastat* hopeless* desperat* no_hope give_up giving_up what's_the_point pointless crushed
       rock_bottom falling_apart shattered can't_go_on helpless* no_way_out bleak anguish* agony suicid*
       ~broken ~empty ~numb distraught inconsolable wretched anguished tormented ~worthless ~useless
       ~trapped ~doomed ~blank ~tortured"""),
    _p("disappointment", "negative", "sadness", 0.4, "disappointed letdown dismay", "sadness frustration",
       """disappoint* let_down letting_me_down letdown dismay* too_bad what_a_shame such_a_shame what_a_pity
       regrettab* underwhelm* expected_more fell_through fell_short bummer meh ~unfortunately ~sadly ~pity
       ~failed ~fail ~failure ~wasted ~not_worth 😞 😔 dissatisf* disillusion* disenchant* unfulfilled
       unsatisf* jaded ~disheartened ~discouraged unsuccessful"""),
    _p("loneliness", "negative", "sadness", 0.3, "lonely isolation isolated homesickness", "sadness grief",
       """lonel* isolat* no_friends no_one_to_talk nobody_to_talk by_myself on_my_own friendless abandon*
       left_out excluded no_one_cares nobody_cares disconnected solitary all_by_myself unwanted homesick*
       ~alone ~invisible ~withdrawn unwelcome unloved lonesome ~rejected ~neglected ~ignored ~unwanted
       ~forgotten ~outcast"""),
    _p("embarrassment", "negative", "sadness", 0.6, "embarrassed awkwardness", "shame",
       """embarrass* awkward* cring* mortif* blush* humiliat* red-faced sheepish* self-conscious
       self_conscious want_to_hide wanted_to_disappear facepalm 😳 🙈 sheepish flustered bashful ~shy
       ~foolish ~stupid ~silly ~idiotic ~dumb ~vain"""),
    _p("shame", "negative", "sadness", 0.5, "ashamed humiliation humiliated", "guilt embarrassment",
       """shame ashamed shameful humiliat* disgrac* dishonor* dishonour* fraud hate_myself
       disgusted_with_myself ~worthless ~hide ~hiding ~secret unworthy ~pathetic ~dirty ~filthy ~vain
       ~inadequate shamed ~fake ~defective ~wimpy"""),
    _p("guilt", "negative", "sadness", 0.5, "guilty", "remorse shame",
       """guilt guilty guilt-ridden my_fault blame_myself feel_bad feeling_bad felt_bad feel_terrible
       feel_awful feel_horrible feel_guilty i_shouldn't_have shouldn't_have ~sorry ~apolog* ~selfish
       ~terrible ~awful neglectful ~ungrateful ~insincere"""),
    _p("remorse", "negative", "sadness", 0.4, "regret regretful remorseful repentance", "guilt",
       """remorse* regret* sorry apolog* my_bad forgive_me wish_i_had wish_i_hadn't should_have should've
       ~oops"""),
    _p("nostalgia", "ambiguous", "sadness", 0.3, "nostalgic sentimental sentimentality wistfulness wistful",
       "sadness love",
       """nostalg* sentimental* reminisc* good_old_days old_days back_then back_in_the_day childhood
       those_days when_i_was_a_kid brings_back wistful* bittersweet throwback yesteryear growing_up
       ~used_to ~years_ago ~memor* ~remember*"""),
    # --- anger family -----------------------------------------------------------------------------------------
    _p("anger", "negative", "anger", 0.9, "angry rage fury furious mad outrage hatred hate resentment wrath",
       "annoyance frustration betrayal disapproval",
       """anger angered angry angrier angriest angrily rage raging enraged furious* fury livid mad madder
       maddening outrag* pissed pissed_off piss_off shut_up screw_you infuriat* irate hate hated hates
       hating hatred resent* wrath seething fuming hostil* vengeful revenge blood_boil seeing_red ~bitter
       ~bitterness ~damn ~damned ~fuck* ~shit ~shitty ~bullshit ~crap ~crappy ~piss* ~wtf ~ffs ~goddamn* 😡
       🤬 😠 incensed indignant hateful spiteful vindictive antagoniz* provok* bitchy short-tempered
       hot-tempered ~cross ~heated ~aggressive ~violent ~vicious ~hostile ~offended ~insulted ~disrespected
       ~wronged ~cruel ~mean ~rude ~heartless ~rebellious
       motherf* muthaf* mofo asshole* bastard* dickhead* douche* scumbag* shithead* jackass* dipshit* stfu gtfo fuck_you
       fuck_off go_to_hell damn_you how_dare_you pissing_me_off pisses_me_off ~dick ~prick ~bitch* ~jerk* ~idiots ~bs
       ~smh ~fml"""),
    _p("annoyance", "negative", "anger", 0.6, "annoyed irritation irritated irked", "frustration anger",
       """annoy* irritat* irked irks irking ugh* argh* grr* sick_of tired_of fed_up nuisance pesky tedious
       gets_on_my_nerves get_on_my_nerves drives_me_crazy driving_me_crazy up_the_wall smh grumpy cranky
       whiny ~ridiculous ~stupid ~dumb ~idiot* ~moron* ~dumbass ~brainless ~clueless ~incompetent ~nonsense
       ~absurd ~ludicrous ~annoying ~whine ~whining ~bother* 🙄 😒 grouchy irritable agitated snappy snappish
       ~impatient ~petty ~moody ~bitchy ~bothered ~rude ~selfish ~greedy ~obnoxious ~stubborn ~whatever
       ~sarcastic whiney
       yikes oof ugh smh facepalm ~seriously ~eye_roll ~meh ~come_on ~give_me_a_break ~get_a_grip ~cringe*
       grow_up get_over_it shut_up ~complain* ~nag ~nagging ~nagged bugs_me bugging_me bugged_me"""),
    _p("frustration", "negative", "anger", 0.7, "frustrated", "annoyance anger disappointment",
       """frustrat* exasperat* aggravat* wits_end running_out_of_patience impatient impatience drives_me_nuts
       driving_me_nuts fed_up at_a_loss ~stuck ~again ~still ~defensive ~pressured ~restless"""),
    _p("disapproval", "negative", "anger", 0.5, "disapproving", "anger annoyance",
       """disapprov* disagree* unfair unjust unacceptable not_okay not_ok not_cool not_right how_dare
       criticiz* condemn* shameful ~wrong ~bad ~worst ~awful ~terrible ~horrible ~sucks ~sucked ~lame
       ~trash ~garbage ~overrated ~nope ~nah ~shouldn't 👎 ~rubbish ~selfish ~rude ~stupid ~irresponsible
       ~ignorant ~disrespectful ~hypocrit* ~should
       ~trash ~garbage ~overhyped ~lousy ~pathetic ~shame ~boo ~booing ~unwatchable ~unbearable ~ridiculous ~terrible
       ~dumb ~awful
       inaccura* incorrect bogus sketchy shady mediocre subpar scam* rigged derogatory offensive ripoff rip-off cursed
       ~cheesy ~bland ~bleh ~fake ~clown* ~inferior ~sloppy ~flawed ~misleading ~wrong ~biased dislike*"""),
    _p("jealousy", "negative", "anger", 0.7, "jealous", "envy insecurity",
       """jealous* green_with_envy green-eyed possessive* why_not_me replaced ~envy ~envious ~resent* ~rival*
       ~left_out ~insecure ~bitter ~possessive"""),
    _p("envy", "negative", "anger", 0.6, "envious", "jealousy",
       """envy envious envie* covet* begrudg* must_be_nice lucky_you wish_i_had ~jealous*"""),
    _p("betrayal", "negative", "anger", 0.8, "betrayed", "anger sadness",
       """betray* backstab* stabbed_in_the_back behind_my_back deceiv* deceit* liar* cheat* two-faced
       two_faced disloyal* unfaithful treacher* took_credit stole_my used_me traitor* ~lied ~lying ~lies
       ~used ~manipulat* ~cheated ~abandoned"""),
    # --- disgust ----------------------------------------------------------------------------------------------
    _p("disgust", "negative", "disgust", 0.6, "disgusted revulsion contempt repulsion", "disapproval anger",
       """disgust* gross grossed nasty vile revolt* repuls* repugnant sicken* makes_me_sick make_me_sick ew
       eww* yuck yucky icky nauseat* vomit* puke* barf* filth filthy foul rotten putrid creepy creep creeps
       pervert* despicable deplorable abhor* loath* contempt* appall* pathetic can't_stand cannot_stand
       can_not_stand ~scum ~trash ~gag 🤢 🤮 disdain* scorn* distaste repellent sleazy slimy tacky trashy
       toxic grossed_out creeped_out ~ugly ~dirty ~shameful ~hypocrit* ~disrespectful cringe cringey cringy
       ~awful ~terrible ~horrible ~horrid ~dreadful ~worst ~unpleasant ~insincere
       hideous grotesque ~gross_out"""),
    # --- fear family ------------------------------------------------------------------------------------------
    _p("fear", "negative", "fear", 0.9, "afraid scared terror terrified fright dread horror panic",
       "anxiety nervousness",
       """fear fears feared fearing afraid scare* scary terrified terrifying terrifies terrify terror* fright*
       dread* horror horrif* panic* petrif* spook* nightmare* freaked_out freaking_out scared_to_death
       trembl* ~threat* ~danger* ~creepy ~shaking ~chills ~haunt* ~alarm* 😱 😨 😰 😧 fearful frightened
       panicked paranoid unsafe shaken rattled unnerv* unsettl* intimidat* threatened hysterical frantic
       phobi* defenseless unprotected assaulted ~vulnerable ~helpless ~exposed ~suspicious ~wary ~distrust*
       ~disturbed ~alarmed
       scared afraid terrified frightened petrified horrified ~nervous ~anxious ~worried ~uneasy ~shaky ~creeped_out
       ~spooked ~disturbing ~chilling"""),
    _p("anxiety", "negative", "fear", 0.7, "anxious worry worried stress stressed apprehension apprehensive unease",
       "nervousness fear overwhelm",
       """anxi* worri* worry* stress* tense tension uneas* apprehens* restless* overthink* on_edge can't_sleep
       chest_gets_tight tight_chest jittery what_if ruminat* insomnia fret* ~uncertain ~panic ~nervous*
       distress* neurotic agitated antsy keyed_up ~pressure ~pressured ~uncomfortable ~hesitant ~reluctant
       ~doubtful ~insecure ~skeptical ~sceptical ~cautious ~troubled ~disturbed ~vulnerable uptight ~rushed
       worried worrying worrisome nervous ~shaky ~jittery ~on_edge ~restless"""),
    _p("nervousness", "negative", "fear", 0.7, "nervous jitters", "anxiety fear",
       """nervous* jitter* butterflies shaky sweaty_palms edgy uneasy timid stage_fright cold_feet ~tense
       ~anxious jumpy shy* ~hesitant ~reluctant ~awkward ~self-conscious ~inhibited
       uneasy shaky ~anxious ~worried ~trembling ~nervy"""),
    _p("overwhelm", "negative", "fear", 0.8, "overwhelmed", "anxiety despair",
       """overwhelm* too_much swamped can't_cope can't_keep_up overload* burnout burned_out burnt_out frazzled
       falling_apart so_much_to_do ~exhaust* ~drowning ~buried ~stressed ~exhausted ~drained ~wrung_out
       ~pressured ~swamped ~stretched"""),
    _p("insecurity", "negative", "fear", 0.5, "insecure self-doubt inadequacy", "anxiety shame jealousy",
       """insecur* self-doubt self_doubt inadequa* not_good_enough imposter impostor doubt_myself unworthy
       compare_myself comparing_myself inferior* ~worthless incapable ~unimportant ~insignificant
       ~vulnerable ~inadequate ~inferior ~unsure ~ugly ~fat ~useless ~defective ~wimpy ~inhibited"""),
    # --- surprise family --------------------------------------------------------------------------------------
    _p("surprise", "ambiguous", "surprise", 0.8, "surprised astonishment amazement shock shocked astonished amazed",
       "confusion realization",
       """surpris* shock* amazed astonish* astound* stun stuns stunned can't_believe cannot_believe
       couldn't_believe can_not_believe unbelievabl* unexpect* out_of_nowhere wow whoa woah omg oh_my_god
       oh_my jaw* speechless startl* didn't_expect never_expected who_knew mind_blown ~amaz* ~incredible
       ~wtf ~no_way ~holy 😮 😲 😯 🤯 dazed dumbfounded flabbergast* awestruck taken_aback out_of_the_blue
       ~sudden ~suddenly ~unexpected ~strange ~weird ~impressed ~amazed ~curious
       wow wowza whoa woah amazed didn't_expect did_not_expect never_thought wasn't_expecting blew_my_mind blown_away
       caught_off_guard out_of_the_blue ~curious ~impressed ~holy_shit ~holy_crap ~no_way ~omg ~omfg"""),
    _p("confusion", "ambiguous", "surprise", 0.5, "confused puzzled bewildered perplexed uncertainty",
       "curiosity surprise",
       """confus* puzzl* bewilder* perplex* baffl* don't_understand doesn't_make_sense makes_no_sense no_idea
       unsure not_sure huh how_come unclear mystif* can't_tell don't_get_it mixed_signals ~weird ~strange
       ~odd ~i_wonder ~don't_know feel_funny feels_funny feeling_funny felt_funny 🤔 😕 indecisive
       disoriented dazed ~lost ~torn ~conflicted ~ambivalent ~distracted ~bizarre"""),
    _p("curiosity", "ambiguous", "surprise", 0.5, "curious interest interested intrigue", "confusion",
       """curious* curiosity interested interesting intrigu* fascinat* wonder wonders wondered wondering
       i_wonder tell_me_more want_to_know wondering_if ~interest ~why ~how ~what ~?
       curious"""),
    _p("realization", "ambiguous", "surprise", 0.4, "epiphany insight", "surprise",
       """realiz* realise realised realising realisation turns_out it_turns_out never_knew didn't_know
       now_i_know now_i_see oh_i_see i_see dawned_on til discover* just_learned come_to_think ~noticed
       ~notice ~understand ~learned ~learnt ~apparently ~forgot"""),
    # --- neutral ----------------------------------------------------------------------------------------------
    _p("neutral", "neutral", "neutral", 0.2, "none"),
)


def _build_labels() -> tuple[dict[str, EmotionProfile], dict[str, EmotionProfile]]:
    profiles: dict[str, EmotionProfile] = {}
    labels: dict[str, EmotionProfile] = {}
    for profile in _TABLE:
        # Catch a broken table at import time: a misspelt valence/family/relation would silently weaken a metric.
        assert profile.valence in VALENCES and profile.family in FAMILIES and 0 <= profile.arousal <= 1, profile.name
        assert profile.name not in profiles, f"duplicate profile {profile.name}"
        profiles[profile.name] = profile
        for label in (profile.name, *profile.aliases):
            assert label not in labels, f"label {label!r} listed twice"
            labels[label] = profile
    for profile in _TABLE:
        for other in profile.related:
            assert other in profiles, f"{profile.name}: unknown related profile {other!r}"
    return profiles, labels


PROFILES, _LABEL_TO_PROFILE = _build_labels()
EMOTION_LABELS: tuple[str, ...] = tuple(sorted(_LABEL_TO_PROFILE))


def _canonical(label: str) -> str:
    return " ".join(label.strip().lower().replace("_", " ").split())


def normalize_emotion(label: str) -> str:
    """The accepted label ``label`` names (case-insensitive, surrounding spaces ignored); UserError if unknown.

    Aliases stay as written (``"Lonely"`` -> ``"lonely"``) so reports keep the user's word; ``emotion_profile``
    resolves them to the shared profile.
    """
    if isinstance(label, str):
        key = _canonical(label)
        if key in _LABEL_TO_PROFILE:
            return key
    raise UserError(f"unknown emotion {label!r}; valid labels: {', '.join(EMOTION_LABELS)}")


def emotion_profile(label: str) -> EmotionProfile:
    """The profile of an accepted label (alias or canonical name); UserError if the label is unknown."""
    return _LABEL_TO_PROFILE[normalize_emotion(label)]


# --- the cue lexicon, compiled ------------------------------------------------------------------------------------

Cue = tuple[str, float]  # (profile name, weight)


@dataclass(frozen=True)
class CueLexicon:
    """The cue lexicons of all profiles, indexed for matching tokens.

    ``exact`` maps a word to its cues; ``prefixes`` maps a stem to its cues (longest stem wins); ``phrases`` maps the
    first word of a phrase to ``(words, cues)`` pairs, longest phrase first.
    """

    exact: dict[str, tuple[Cue, ...]]
    prefixes: dict[str, tuple[Cue, ...]]
    phrases: dict[str, tuple[tuple[tuple[str, ...], tuple[Cue, ...]], ...]]
    max_prefix: int


def _compile_lexicon() -> CueLexicon:
    exact: dict[str, list[Cue]] = {}
    prefixes: dict[str, list[Cue]] = {}
    phrases: dict[tuple[str, ...], list[Cue]] = {}
    for profile in _TABLE:
        for entry in profile.cues.split():
            weight = WEAK_CUE_WEIGHT if entry.startswith("~") else 1.0
            entry = entry.lstrip("~")
            if "_" in entry:
                words = tuple(entry.split("_"))
                phrases.setdefault(words, []).append((profile.name, weight))
            elif entry.endswith("*") and len(entry) > 1:
                prefixes.setdefault(entry[:-1], []).append((profile.name, weight))
            else:
                exact.setdefault(entry, []).append((profile.name, weight))
    # A word listed twice under one profile (strong and weak) keeps its strongest weight.
    exact = {word: list({name: max(w for n, w in cues if n == name) for name, _ in cues}.items())
             for word, cues in exact.items()}
    by_first: dict[str, list[tuple[tuple[str, ...], tuple[Cue, ...]]]] = {}
    for words, cues in phrases.items():
        # Like a word, a phrase listed under several profiles splits its weight between them.
        shared = tuple((name, weight / len(cues)) for name, weight in cues)
        by_first.setdefault(words[0], []).append((words, shared))
    return CueLexicon(
        exact={word: tuple(cues) for word, cues in exact.items()},
        prefixes={stem: tuple(cues) for stem, cues in prefixes.items()},
        phrases={first: tuple(sorted(items, key=lambda item: -len(item[0]))) for first, items in by_first.items()},
        max_prefix=max(map(len, prefixes)),
    )


CUE_LEXICON = _compile_lexicon()


@lru_cache(maxsize=65536)
def word_cues(word: str) -> tuple[Cue, ...]:
    """The cues of one lowercase token: those of its exact entries and of its longest matching stem.

    Without any, an elongated word is looked up with its letter runs shortened ("sooo" -> "soo", "so"), laughter
    ("bahahaha", "lolol") is amusement and an un-X-able judgement ("unwatchable") weak disapproval.

    A word listed under several profiles splits its weight between them, so an ambiguous word is no stronger
    evidence overall than a clear one.
    """
    weights = _lookup(word)
    if not weights and _ELONGATION.search(word):
        # Emphatic spelling ("sooo haaappy", "loooove"): try the runs shortened to two letters, then to one.
        weights = _lookup(_ELONGATION.sub(r"\1\1", word)) or _lookup(_ELONGATION.sub(r"\1", word))
    if not weights and _LAUGHTER.search(word):
        weights = {"amusement": 1.0}  # "bahahaha", "hehehe", "lolol", "lmaooo"
    if not weights and _UNABLE.match(word) and word not in _UNABLE_NEUTRAL:
        weights = {"disapproval": WEAK_CUE_WEIGHT}  # "unwatchable", "unbearable": un-X-able judges something
    return tuple((name, weight / len(weights)) for name, weight in weights.items())


_ELONGATION = re.compile(r"([a-z])\1\1+")
_LAUGHTER = re.compile(r"(?:ha){2,}|(?:he){2,}h?|^(?:lo)+l+$|^lmf?a+o+$|^rofl")
_UNABLE = re.compile(r"^un[a-z]{3,}[ai]ble$")
_UNABLE_NEUTRAL = frozenset("""unable understandable unavoidable unpredictable unimaginable unforgettable unbeatable
    unstoppable unsinkable unbreakable unshakable unshakeable unflappable""".split())


def _lookup(word: str) -> dict[str, float]:
    """Profile -> weight for the exact entries of ``word`` and its longest matching stem."""
    weights: dict[str, float] = dict(CUE_LEXICON.exact.get(word, ()))
    for length in range(min(len(word), CUE_LEXICON.max_prefix), 2, -1):
        stem_cues = CUE_LEXICON.prefixes.get(word[:length])
        if stem_cues is not None:
            for name, weight in stem_cues:
                weights[name] = max(weight, weights.get(name, 0.0))
            break
    return weights


def affinity(target: EmotionProfile, cue_profile: str) -> float:
    """How far a cue of ``cue_profile`` counts as evidence for ``target`` (0..1).

    1 for the target's own cues; 0.85 for profiles the table lists as related (either way); 0.8 for cues of the
    target's family when the target is a basic emotion standing for its family (Ekman's "joy" covers gratitude,
    amusement, ...); 0.35 for the rest of the family; 0.1 for another profile of the same valence; 0 otherwise.
    """
    if cue_profile == target.name:
        return 1.0
    other = PROFILES[cue_profile]
    if cue_profile in target.related or target.name in other.related:
        return 0.85
    if other.family == target.family and target.is_family_head:
        return 0.8
    if other.family == target.family:
        return 0.35
    if other.valence == target.valence and target.valence in ("positive", "negative"):
        return 0.1
    return 0.0
