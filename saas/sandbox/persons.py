"""Synthetic card holders: realistic Japanese names and addresses, every era and gender.

Some names and addresses contain characters outside the certificate's character set
(𠮷, 髙, 﨑, 德…); like a municipality, the sandbox writes the standard character into the
certificate and flags its position as a substitute, so relying parties meet that case
in the sandbox before they meet it live.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

from saas.jpki.certificates import Era, Gender, PersonAttributes

# (registered spelling, spelling in the certificate): the second replaces outside characters.
FAMILY_NAMES = [
    ("佐藤", "佐藤"), ("鈴木", "鈴木"), ("高橋", "高橋"), ("田中", "田中"), ("伊藤", "伊藤"),
    ("渡辺", "渡辺"), ("山本", "山本"), ("中村", "中村"), ("小林", "小林"), ("加藤", "加藤"),
    ("吉田", "吉田"), ("山田", "山田"), ("佐々木", "佐々木"), ("松本", "松本"), ("井上", "井上"),
    ("木村", "木村"), ("林", "林"), ("斎藤", "斎藤"), ("清水", "清水"), ("長谷川", "長谷川"),
    ("髙橋", "高橋"), ("𠮷田", "吉田"), ("山﨑", "山崎"), ("德永", "徳永"), ("渡邊", "渡辺"),
]
GIVEN_NAMES = {
    Gender.MALE: ["太郎", "翔太", "大輔", "健一", "誠", "博", "茂", "清", "正男", "蓮", "悠真", "湊"],
    Gender.FEMALE: ["花子", "陽子", "美咲", "結衣", "恵子", "幸子", "ハル", "キヨ", "陽葵", "芽依"],
    Gender.UNKNOWN: ["光", "薫", "渚", "翼", "真琴"],
}
# (prefecture, romanised prefecture, [(municipality, town)])
PLACES = [
    ("東京都", "Tokyo-to", [("千代田区", "霞が関"), ("世田谷区", "三軒茶屋"), ("八王子市", "元本郷町")]),
    ("大阪府", "Osaka-fu", [("大阪市北区", "梅田"), ("堺市堺区", "南瓦町")]),
    ("北海道", "Hokkaido", [("札幌市中央区", "北一条西"), ("函館市", "東雲町")]),
    ("福岡県", "Fukuoka-ken", [("福岡市博多区", "博多駅前"), ("北九州市小倉北区", "城内")]),
    ("長崎県", "Nagasaki-ken", [("長崎市", "魚の町"), ("佐世保市", "八幡町")]),
    ("宮城県", "Miyagi-ken", [("仙台市青葉区", "国分町")]),
    ("愛知県", "Aichi-ken", [("名古屋市中区", "三の丸"), ("豊田市", "西町")]),
    ("沖縄県", "Okinawa-ken", [("那覇市", "泉崎")]),
    ("鹿児島県", "Kagoshima-ken", [("鹿児島市", "山下町")]),
    ("群馬県", "Gunma-ken", [("前橋市", "大手町")]),
]
# Towns whose registered spelling has an outside character.
OUTSIDE_TOWNS = [("髙田", "高田"), ("﨑山町", "崎山町")]
FULL_WIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


PREFECTURES = {
    "北海道": "Hokkaido", "青森県": "Aomori-ken", "岩手県": "Iwate-ken", "宮城県": "Miyagi-ken",
    "秋田県": "Akita-ken", "山形県": "Yamagata-ken", "福島県": "Fukushima-ken", "茨城県": "Ibaraki-ken",
    "栃木県": "Tochigi-ken", "群馬県": "Gunma-ken", "埼玉県": "Saitama-ken", "千葉県": "Chiba-ken",
    "東京都": "Tokyo-to", "神奈川県": "Kanagawa-ken", "新潟県": "Niigata-ken", "富山県": "Toyama-ken",
    "石川県": "Ishikawa-ken", "福井県": "Fukui-ken", "山梨県": "Yamanashi-ken", "長野県": "Nagano-ken",
    "岐阜県": "Gifu-ken", "静岡県": "Shizuoka-ken", "愛知県": "Aichi-ken", "三重県": "Mie-ken",
    "滋賀県": "Shiga-ken", "京都府": "Kyoto-fu", "大阪府": "Osaka-fu", "兵庫県": "Hyogo-ken",
    "奈良県": "Nara-ken", "和歌山県": "Wakayama-ken", "鳥取県": "Tottori-ken", "島根県": "Shimane-ken",
    "岡山県": "Okayama-ken", "広島県": "Hiroshima-ken", "山口県": "Yamaguchi-ken", "徳島県": "Tokushima-ken",
    "香川県": "Kagawa-ken", "愛媛県": "Ehime-ken", "高知県": "Kochi-ken", "福岡県": "Fukuoka-ken",
    "佐賀県": "Saga-ken", "長崎県": "Nagasaki-ken", "熊本県": "Kumamoto-ken", "大分県": "Oita-ken",
    "宮崎県": "Miyazaki-ken", "鹿児島県": "Kagoshima-ken", "沖縄県": "Okinawa-ken",
}


def prefecture_romaji(address: str) -> str | None:
    """The romanised prefecture an address starts with (the certificate's L= value)."""
    return next((romaji for name, romaji in PREFECTURES.items() if address.startswith(name)), None)


def substitute_flags(text: str, positions: tuple[int, ...]) -> str:
    """One digit per character, 1 where the character is a substitute ("" when none is)."""
    marked = set(positions)
    return "".join("1" if i in marked else "0" for i in range(len(text))) if marked else ""


def substitute_positions(flags: str) -> tuple[int, ...]:
    return tuple(i for i, flag in enumerate(flags) if flag != "0")


@dataclass(frozen=True)
class SyntheticPerson:
    attributes: PersonAttributes
    prefecture_romaji: str


def substitute(registered: str, written: str) -> tuple[str, tuple[int, ...]]:
    """The certificate spelling and the positions where it differs from the register."""
    # Characters outside the BMP are one code point in Python, so positions line up.
    return written, tuple(i for i, (a, b) in enumerate(zip(registered, written, strict=True)) if a != b)


def synthetic_person(rng: random.Random, *, era: Era | None = None,
                     gender: Gender | None = None, today: date | None = None) -> SyntheticPerson:
    today = today or date.today()
    gender = gender or rng.choice([Gender.MALE, Gender.FEMALE, Gender.FEMALE, Gender.MALE,
                                   Gender.UNKNOWN])
    registered_family, written_family = rng.choice(FAMILY_NAMES)
    given = rng.choice(GIVEN_NAMES[gender])
    name, name_subs = substitute(f"{registered_family}\u3000{given}",
                                 f"{written_family}\u3000{given}")
    prefecture, romaji, towns = rng.choice(PLACES)
    municipality, town = rng.choice(towns)
    registered_town = written_town = town
    if rng.random() < 0.1:
        registered_town, written_town = rng.choice(OUTSIDE_TOWNS)
    block = f"{rng.randint(1, 5)}丁目{rng.randint(1, 30)}番{rng.randint(1, 20)}号".translate(FULL_WIDTH)
    head = f"{prefecture}{municipality}"
    address, town_subs = substitute(registered_town, written_town)
    address_subs = tuple(len(head) + i for i in town_subs)
    return SyntheticPerson(
        attributes=PersonAttributes(
            name=name, name_substitutes=name_subs, gender=gender,
            birthdate=(birth := _birthdate(rng, era, today)), birth_era=Era.of(birth),
            address=f"{head}{address}{block}", address_substitutes=address_subs),
        prefecture_romaji=romaji,
    )


def _birthdate(rng: random.Random, era: Era | None, today: date) -> date:
    oldest = date(today.year - 110, today.month, min(today.day, 28))  # 29 February safe
    if era is None:
        start, end = oldest, today - timedelta(days=15 * 366)
    else:
        following = [e for e in Era if e.value == era.value + 1]
        start = max(era.first_day, oldest if era is not Era.MEIJI else date(1905, 1, 1))
        end = following[0].first_day - timedelta(days=1) if following else today
    return start + timedelta(days=rng.randint(0, (end - start).days))
