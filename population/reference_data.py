"""Vietnamese demographic reference distributions for the synthetic population generator.

Plain data, standard library only, cheap to import. Every string is NFC. Every distribution whose
name does not say "weights" is normalised at import so that its shares add up to 1.

Sources
-------
- GSO (General Statistics Office of Viet Nam, Tổng cục Thống kê), *Kết quả toàn bộ Tổng điều tra dân
  số và nhà ở năm 2019* (full results of the 2019 Population and Housing Census; census day 2019-04-01,
  96,208,984 people: 47,881,061 male, 48,327,923 female). Used for the ethnic groups, religions,
  provinces, age and sex structure and household sizes.
- Decision 121-TCTK/PPCĐ of 1979-03-02, *Danh mục các thành phần dân tộc Việt Nam*: the 54 ethnic
  groups and their two-digit codes. The population register uses the same list.
- Circular 07/2016/TT-BCA (replaced by Circular 59/2021/TT-BCA): province codes in the first three
  digits of the 12-digit personal ID number. They are the GSO province codes of the 63 provinces that
  existed before 2025-07-01, zero-padded to three digits.
- Resolution 202/2025/QH15 (in force 2025-07-01): the 63 provinces merged into 34. The new two-digit
  codes are the ones the `vietnam-provinces` package (2025.x, GSO catalogue) uses.
- Surname shares: the figures usually quoted from Lê Trung Hoa, *Họ và tên người Việt Nam* (2005).
  Hoàng/Huỳnh and Vũ/Võ are one name each, pronounced differently in the North and the South; the
  combined share is split here. There is no census of names.
- Given and middle names: weights are the author's estimates of relative frequency, not published
  statistics. They favour names common in the birth cohorts of 1950-2020.
- Blood groups: Vietnamese blood-donor and hospital typing series (National Institute of
  Hematology and Blood Transfusion): about O 42%, B 31%, A 22%, AB 5%; Rh(D)-negative is rare.
- Vital rates: GSO annual population change surveys (estimates for 2023).
"""

from __future__ import annotations

import math
from typing import Final

# --------------------------------------------------------------------------------------------------
# Helpers (private)
# --------------------------------------------------------------------------------------------------


def _normalise(weights: tuple[float, ...], absorb: int = -1) -> tuple[float, ...]:
    """Scale weights so they sum to 1; the entry at `absorb` takes the floating-point remainder."""
    total = math.fsum(weights)
    shares = [w / total for w in weights]
    shares[absorb] = 0.0
    shares[absorb] = 1.0 - math.fsum(shares)
    return tuple(shares)


def _normalise_pairs(pairs: tuple[tuple[str, float], ...], absorb: int = -1) -> tuple[tuple[str, float], ...]:
    shares = _normalise(tuple(w for _, w in pairs), absorb)
    return tuple((name, share) for (name, _), share in zip(pairs, shares, strict=True))


# --------------------------------------------------------------------------------------------------
# 1. Family names (họ)
# --------------------------------------------------------------------------------------------------

# Percent of the population. The big fourteen follow the usual quotation of Lê Trung Hoa (2005):
# Nguyễn 38.4, Trần 11-12, Lê 9.5, Phạm 7.0, Hoàng/Huỳnh 5.1, Phan 4.5, Vũ/Võ 3.9, Đặng 2.1, Bùi 2.0,
# Đỗ 1.4, Hồ 1.3, Ngô 1.3, Dương 1.0, Lý 0.5. The split of Hoàng (north) / Huỳnh (centre and south) and
# Vũ (north) / Võ (centre and south) and the tail are estimates. Lò, Cầm and Sầm are typical of the
# Thái, Nông, Bế, Lục and Vi of the Tày and Nùng, Giàng of the HMông, Thạch of the Khơ-me. The listed
# percentages add up to 100: the rarer names not listed are folded into the tail.
_SURNAME_PERCENT: Final[tuple[tuple[str, float], ...]] = (
    ("Nguyễn", 38.4),
    ("Trần", 11.0),
    ("Lê", 9.5),
    ("Phạm", 7.0),
    ("Hoàng", 3.1),
    ("Huỳnh", 2.0),
    ("Phan", 4.5),
    ("Vũ", 2.2),
    ("Võ", 1.7),
    ("Đặng", 2.1),
    ("Bùi", 2.0),
    ("Đỗ", 1.4),
    ("Hồ", 1.3),
    ("Ngô", 1.3),
    ("Dương", 1.0),
    ("Lý", 0.5),
    ("Trương", 0.7),
    ("Đinh", 0.6),
    ("Đào", 0.6),
    ("Đoàn", 0.6),
    ("Trịnh", 0.5),
    ("Lâm", 0.5),
    ("Mai", 0.5),
    ("Hà", 0.5),
    ("Lương", 0.4),
    ("Cao", 0.4),
    ("Phùng", 0.3),
    ("Tô", 0.3),
    ("Lưu", 0.3),
    ("Châu", 0.3),
    ("Tạ", 0.3),
    ("Triệu", 0.3),
    ("Nông", 0.3),
    ("Quách", 0.2),
    ("Vương", 0.2),
    ("Kiều", 0.2),
    ("Thái", 0.2),
    ("La", 0.2),
    ("Chu", 0.2),
    ("Lò", 0.15),
    ("Thạch", 0.15),
    ("Cầm", 0.1),
    ("Giàng", 0.1),
    ("Sầm", 0.05),
    ("Lại", 0.15),
    ("Đàm", 0.15),
    ("Hứa", 0.15),
    ("Nghiêm", 0.1),
    ("Mạc", 0.1),
    ("Lục", 0.1),
    ("Bế", 0.1),
    ("Vi", 0.1),
    ("Tăng", 0.1),
    ("Giáp", 0.1),
    ("Thân", 0.1),
    ("Doãn", 0.1),
    ("Diệp", 0.1),
    ("Phí", 0.1),
    ("Lã", 0.1),
    ("Khúc", 0.05),
    ("Ông", 0.05),
    ("Âu", 0.05),
    ("Ma", 0.05),
)

SURNAMES: Final[tuple[tuple[str, float], ...]] = _normalise_pairs(_SURNAME_PERCENT)
"""(family name, share of the population); shares sum to 1."""

# --------------------------------------------------------------------------------------------------
# 2. Middle names (tên đệm / tên lót) — relative weights, not normalised
# --------------------------------------------------------------------------------------------------

# "Văn" for men and "Thị" for women dominate the older generations (a majority of people born before
# about 1980) and are much rarer among children born after 2000; the generator may tilt these
# weights by birth year.
MIDDLE_NAMES_MALE: Final[tuple[tuple[str, float], ...]] = (
    ("Văn", 35.0),
    ("Minh", 9.0),
    ("Đức", 8.0),
    ("Quang", 6.0),
    ("Hữu", 6.0),
    ("Đình", 5.0),
    ("Công", 5.0),
    ("Thanh", 5.0),
    ("Quốc", 4.0),
    ("Hoàng", 4.0),
    ("Gia", 4.0),
    ("Ngọc", 3.0),
    ("Xuân", 3.0),
    ("Anh", 3.0),
    ("Trọng", 3.0),
    ("Thành", 3.0),
    ("Việt", 3.0),
    ("Duy", 3.0),
    ("Thế", 3.0),
    ("Bảo", 3.0),
    ("Tấn", 3.0),
    ("Tuấn", 2.0),
    ("Mạnh", 2.0),
    ("Hải", 2.0),
    ("Trung", 2.0),
    ("Bá", 2.0),
    ("Tiến", 2.0),
    ("Nhật", 2.0),
    ("Khánh", 2.0),
    ("Chí", 2.0),
    ("Đăng", 2.0),
    ("Phú", 1.0),
    ("Hồng", 1.0),
    ("Kim", 1.0),
)

MIDDLE_NAMES_FEMALE: Final[tuple[tuple[str, float], ...]] = (
    ("Thị", 45.0),
    ("Ngọc", 8.0),
    ("Thu", 5.0),
    ("Thanh", 5.0),
    ("Minh", 4.0),
    ("Phương", 4.0),
    ("Kim", 4.0),
    ("Hồng", 4.0),
    ("Mai", 3.0),
    ("Bảo", 3.0),
    ("Khánh", 3.0),
    ("Bích", 3.0),
    ("Mỹ", 3.0),
    ("Thùy", 3.0),
    ("Hoài", 2.0),
    ("Diệu", 2.0),
    ("Thúy", 2.0),
    ("Hải", 2.0),
    ("Quỳnh", 2.0),
    ("Gia", 2.0),
    ("Như", 2.0),
    ("Cẩm", 2.0),
    ("Hoàng", 2.0),
    ("Xuân", 2.0),
    ("Lan", 1.0),
    ("Tuyết", 1.0),
    ("Ánh", 1.0),
    ("Tường", 1.0),
    ("Trúc", 1.0),
    ("Vân", 1.0),
)

# --------------------------------------------------------------------------------------------------
# 3. Given names (tên) — relative weights, not normalised
# --------------------------------------------------------------------------------------------------

# Modern ("new style") tone placement throughout: Thủy, Hòa, Thúy (not Thuỷ, Hoà, Thuý). Each name
# appears once; the folded matching key treats the variants as equal.
GIVEN_NAMES_MALE: Final[tuple[tuple[str, float], ...]] = (
    ("Anh", 10.0),
    ("Hùng", 8.0),
    ("Dũng", 8.0),
    ("Tuấn", 8.0),
    ("Minh", 8.0),
    ("Nam", 7.0),
    ("Long", 6.0),
    ("Hải", 6.0),
    ("Sơn", 6.0),
    ("Thắng", 5.0),
    ("Huy", 6.0),
    ("Khoa", 4.0),
    ("Phúc", 4.0),
    ("Quân", 5.0),
    ("Đức", 5.0),
    ("Bảo", 4.0),
    ("Khánh", 4.0),
    ("Hoàng", 5.0),
    ("Hiếu", 5.0),
    ("Trung", 5.0),
    ("Tùng", 5.0),
    ("Cường", 5.0),
    ("Thành", 5.0),
    ("Vinh", 4.0),
    ("Hưng", 4.0),
    ("Phong", 4.0),
    ("Tâm", 3.0),
    ("Tài", 3.0),
    ("Tú", 3.0),
    ("Kiên", 3.0),
    ("Lâm", 3.0),
    ("Đạt", 5.0),
    ("Duy", 4.0),
    ("Thịnh", 3.0),
    ("Trí", 3.0),
    ("Nghĩa", 3.0),
    ("Quang", 4.0),
    ("Toàn", 3.0),
    ("Lực", 2.0),
    ("Tiến", 3.0),
    ("Thanh", 3.0),
    ("Bình", 4.0),
    ("Việt", 3.0),
    ("Lộc", 3.0),
    ("Phát", 2.0),
    ("Kiệt", 2.0),
    ("Khang", 2.0),
    ("An", 3.0),
    ("Nhân", 3.0),
    ("Thái", 2.0),
    ("Tín", 2.0),
    ("Vũ", 3.0),
    ("Hậu", 2.0),
    ("Hiệp", 2.0),
    ("Chiến", 3.0),
    ("Công", 2.0),
    ("Dương", 2.0),
    ("Giang", 2.0),
    ("Thuận", 2.0),
    ("Quý", 2.0),
    ("Sang", 2.0),
    ("Tân", 2.0),
    ("Thiện", 2.0),
    ("Hòa", 2.0),
)

GIVEN_NAMES_FEMALE: Final[tuple[tuple[str, float], ...]] = (
    ("Lan", 7.0),
    ("Hương", 8.0),
    ("Hoa", 6.0),
    ("Linh", 9.0),
    ("Trang", 9.0),
    ("Thảo", 7.0),
    ("Ngọc", 6.0),
    ("Hà", 6.0),
    ("Mai", 6.0),
    ("Hằng", 6.0),
    ("Phương", 6.0),
    ("Thủy", 6.0),
    ("Hòa", 3.0),
    ("Yến", 4.0),
    ("Nhung", 4.0),
    ("Vy", 4.0),
    ("Chi", 4.0),
    ("An", 3.0),
    ("My", 3.0),
    ("Nhi", 4.0),
    ("Anh", 7.0),
    ("Hạnh", 4.0),
    ("Huyền", 5.0),
    ("Dung", 4.0),
    ("Loan", 3.0),
    ("Liên", 3.0),
    ("Nga", 4.0),
    ("Oanh", 3.0),
    ("Quỳnh", 4.0),
    ("Tâm", 3.0),
    ("Thu", 3.0),
    ("Thúy", 4.0),
    ("Trâm", 3.0),
    ("Tuyết", 3.0),
    ("Uyên", 3.0),
    ("Vân", 4.0),
    ("Xuân", 2.0),
    ("Hiền", 4.0),
    ("Hồng", 4.0),
    ("Giang", 4.0),
    ("Hân", 3.0),
    ("Lệ", 2.0),
    ("Nhàn", 2.0),
    ("Nguyệt", 2.0),
    ("Như", 3.0),
    ("Thư", 4.0),
    ("Trinh", 3.0),
    ("Diệp", 2.0),
    ("Châu", 2.0),
    ("Duyên", 3.0),
    ("Bích", 2.0),
    ("Ly", 3.0),
    ("Tiên", 3.0),
    ("Ngân", 4.0),
    ("Phượng", 3.0),
    ("Thắm", 2.0),
    ("Ánh", 3.0),
    ("Quyên", 2.0),
    ("Hường", 2.0),
    ("Khuê", 1.0),
    ("Lam", 1.0),
    ("Hảo", 2.0),
)

# --------------------------------------------------------------------------------------------------
# 4. Ethnic groups (dân tộc) — codes of Decision 121-TCTK/PPCĐ, counts of the 2019 census
# --------------------------------------------------------------------------------------------------

# (code, name, people on 2019-04-01). The 54 groups total 96,205,082; the remaining 3,902 people of
# the census total were foreigners (code 55, "Người nước ngoài", not an ethnic group of Viet Nam).
# Names follow the hyphenated spelling of the 1979 list; the census tables write some of them
# differently (Khmer, Mông, Gia Rai, Ê Đê, Giẻ Triêng, …); match on the folded key.
ETHNIC_POPULATION_2019: Final[tuple[tuple[str, str, int], ...]] = (
    ("01", "Kinh", 82_085_826),
    ("02", "Tày", 1_845_492),
    ("03", "Thái", 1_820_950),
    ("04", "Hoa", 749_466),
    ("05", "Khơ-me", 1_319_652),
    ("06", "Mường", 1_452_095),
    ("07", "Nùng", 1_083_298),
    ("08", "HMông", 1_393_547),
    ("09", "Dao", 891_151),
    ("10", "Gia-rai", 513_930),
    ("11", "Ngái", 1_649),
    ("12", "Ê-đê", 398_671),
    ("13", "Ba-na", 286_910),
    ("14", "Xơ-đăng", 212_277),
    ("15", "Sán Chay", 201_398),
    ("16", "Cơ-ho", 200_800),
    ("17", "Chăm", 178_948),
    ("18", "Sán Dìu", 183_004),
    ("19", "Hrê", 149_460),
    ("20", "Mnông", 127_334),
    ("21", "Ra-glai", 146_613),
    ("22", "Xtiêng", 100_752),
    ("23", "Bru-Vân Kiều", 94_598),
    ("24", "Thổ", 91_430),
    ("25", "Giáy", 67_858),
    ("26", "Cơ-tu", 74_173),
    ("27", "Gié-Triêng", 63_322),
    ("28", "Mạ", 50_322),
    ("29", "Khơ-mú", 90_612),
    ("30", "Co", 40_442),
    ("31", "Tà-ôi", 52_356),
    ("32", "Chơ-ro", 29_520),
    ("33", "Kháng", 16_180),
    ("34", "Xinh-mun", 29_503),
    ("35", "Hà Nhì", 25_539),
    ("36", "Chu-ru", 23_242),
    ("37", "Lào", 17_532),
    ("38", "La Chí", 15_126),
    ("39", "La Ha", 10_157),
    ("40", "Phù Lá", 12_471),
    ("41", "La Hủ", 12_113),
    ("42", "Lự", 6_757),
    ("43", "Lô Lô", 4_827),
    ("44", "Chứt", 7_513),
    ("45", "Mảng", 4_650),
    ("46", "Pà Thẻn", 8_248),
    ("47", "Cờ Lao", 4_003),
    ("48", "Cống", 2_729),
    ("49", "Bố Y", 3_232),
    ("50", "Si La", 909),
    ("51", "Pu Péo", 903),
    ("52", "Brâu", 525),
    ("53", "Ơ-đu", 428),
    ("54", "Rơ-măm", 639),
)

ETHNIC_GROUPS: Final[tuple[tuple[str, str, float], ...]] = tuple(
    (code, name, share)
    for (code, name, _), share in zip(
        ETHNIC_POPULATION_2019,
        _normalise(tuple(float(n) for _, _, n in ETHNIC_POPULATION_2019), absorb=0),  # Kinh absorbs
        strict=True,
    )
)
"""(two-digit code, name, share of the 2019 population); 54 entries, shares sum to 1."""

# --------------------------------------------------------------------------------------------------
# 5. Religions (tôn giáo) — 2019 census
# --------------------------------------------------------------------------------------------------

# 13.2 million followers of a registered religion (13.7%); everyone else answered "Không" (none;
# ancestor worship and folk belief are not counted as a religion). The five large religions are census
# counts (Công giáo 5.87 M, Phật giáo 4.61 M, Phật giáo Hòa Hảo 0.98 M, Tin lành 0.96 M, Cao Đài 0.56 M,
# Hồi giáo 71 k); the small ones are approximate.
_RELIGION_PERCENT: Final[tuple[tuple[str, float], ...]] = (
    ("Không", 86.32),
    ("Công giáo", 6.098),
    ("Phật giáo", 4.788),
    ("Phật giáo Hòa Hảo", 1.022),
    ("Tin lành", 0.998),
    ("Cao Đài", 0.578),
    ("Hồi giáo", 0.074),
    ("Bà-la-môn", 0.067),
    ("Tứ Ân Hiếu Nghĩa", 0.030),
    ("Tịnh độ Cư sĩ Phật hội Việt Nam", 0.023),
    ("Bửu Sơn Kỳ Hương", 0.004),
    ("Baha'i", 0.001),
    ("Minh Sư Đạo", 0.0004),
    ("Minh Lý Đạo", 0.0003),
)

RELIGIONS: Final[tuple[tuple[str, float], ...]] = _normalise_pairs(_RELIGION_PERCENT, absorb=0)
"""(religion, share of the population); "Không" = no religion; shares sum to 1."""

# --------------------------------------------------------------------------------------------------
# 6-8. The 63 provinces before 2025-07-01, their population and their province since the merger
# --------------------------------------------------------------------------------------------------

# (3-digit code used as the prefix of the 12-digit personal ID, name). GSO codes, zero-padded.
LEGACY_PROVINCES: Final[tuple[tuple[str, str], ...]] = (
    ("001", "Hà Nội"),
    ("002", "Hà Giang"),
    ("004", "Cao Bằng"),
    ("006", "Bắc Kạn"),
    ("008", "Tuyên Quang"),
    ("010", "Lào Cai"),
    ("011", "Điện Biên"),
    ("012", "Lai Châu"),
    ("014", "Sơn La"),
    ("015", "Yên Bái"),
    ("017", "Hòa Bình"),
    ("019", "Thái Nguyên"),
    ("020", "Lạng Sơn"),
    ("022", "Quảng Ninh"),
    ("024", "Bắc Giang"),
    ("025", "Phú Thọ"),
    ("026", "Vĩnh Phúc"),
    ("027", "Bắc Ninh"),
    ("030", "Hải Dương"),
    ("031", "Hải Phòng"),
    ("033", "Hưng Yên"),
    ("034", "Thái Bình"),
    ("035", "Hà Nam"),
    ("036", "Nam Định"),
    ("037", "Ninh Bình"),
    ("038", "Thanh Hóa"),
    ("040", "Nghệ An"),
    ("042", "Hà Tĩnh"),
    ("044", "Quảng Bình"),
    ("045", "Quảng Trị"),
    ("046", "Thừa Thiên Huế"),
    ("048", "Đà Nẵng"),
    ("049", "Quảng Nam"),
    ("051", "Quảng Ngãi"),
    ("052", "Bình Định"),
    ("054", "Phú Yên"),
    ("056", "Khánh Hòa"),
    ("058", "Ninh Thuận"),
    ("060", "Bình Thuận"),
    ("062", "Kon Tum"),
    ("064", "Gia Lai"),
    ("066", "Đắk Lắk"),
    ("067", "Đắk Nông"),
    ("068", "Lâm Đồng"),
    ("070", "Bình Phước"),
    ("072", "Tây Ninh"),
    ("074", "Bình Dương"),
    ("075", "Đồng Nai"),
    ("077", "Bà Rịa - Vũng Tàu"),
    ("079", "Hồ Chí Minh"),
    ("080", "Long An"),
    ("082", "Tiền Giang"),
    ("083", "Bến Tre"),
    ("084", "Trà Vinh"),
    ("086", "Vĩnh Long"),
    ("087", "Đồng Tháp"),
    ("089", "An Giang"),
    ("091", "Kiên Giang"),
    ("092", "Cần Thơ"),
    ("093", "Hậu Giang"),
    ("094", "Sóc Trăng"),
    ("095", "Bạc Liêu"),
    ("096", "Cà Mau"),
)

# People counted on 2019-04-01 in each province (2019 census, full results); they add up to the
# national total of 96,208,984.
LEGACY_PROVINCE_POPULATION_2019: Final[dict[str, int]] = {
    "001": 8_053_663,
    "002": 854_679,
    "004": 530_341,
    "006": 313_905,
    "008": 784_811,
    "010": 730_420,
    "011": 598_856,
    "012": 460_196,
    "014": 1_248_415,
    "015": 821_030,
    "017": 854_131,
    "019": 1_286_751,
    "020": 781_655,
    "022": 1_320_324,
    "024": 1_803_950,
    "025": 1_463_726,
    "026": 1_151_154,
    "027": 1_368_840,
    "030": 1_892_254,
    "031": 2_028_514,
    "033": 1_252_731,
    "034": 1_860_447,
    "035": 852_800,
    "036": 1_780_393,
    "037": 982_487,
    "038": 3_640_128,
    "040": 3_327_791,
    "042": 1_288_866,
    "044": 895_430,
    "045": 632_375,
    "046": 1_128_620,
    "048": 1_134_310,
    "049": 1_495_812,
    "051": 1_231_697,
    "052": 1_486_918,
    "054": 872_964,
    "056": 1_231_107,
    "058": 590_467,
    "060": 1_230_808,
    "062": 540_438,
    "064": 1_513_847,
    "066": 1_869_322,
    "067": 622_168,
    "068": 1_296_906,
    "070": 994_679,
    "072": 1_169_165,
    "074": 2_426_561,
    "075": 3_097_107,
    "077": 1_148_313,
    "079": 8_993_082,
    "080": 1_688_547,
    "082": 1_764_185,
    "083": 1_288_463,
    "084": 1_009_168,
    "086": 1_022_791,
    "087": 1_599_504,
    "089": 1_908_352,
    "091": 1_723_067,
    "092": 1_235_171,
    "093": 733_017,
    "094": 1_199_653,
    "095": 907_236,
    "096": 1_194_476,
}

LEGACY_PROVINCE_POPULATION_SHARE: Final[dict[str, float]] = dict(
    zip(
        LEGACY_PROVINCE_POPULATION_2019,
        _normalise(tuple(float(n) for n in LEGACY_PROVINCE_POPULATION_2019.values())),
        strict=True,
    )
)
"""Legacy 3-digit code -> share of the 2019 census population; sums to 1."""

# Legacy 3-digit code -> 2-digit code of the province it has belonged to since 2025-07-01
# (Resolution 202/2025/QH15: whole provinces were merged, none was split). The merged province keeps
# the code of the province that hosts its capital, which is not always the one that kept the name:
# Lào Cai is 15 (ex-Yên Bái), Bắc Ninh 24 (ex-Bắc Giang), Quảng Trị 44 (ex-Quảng Bình), Gia Lai 52
# (ex-Bình Định), Tây Ninh 80 (ex-Long An), Đồng Tháp 82 (ex-Tiền Giang), An Giang 91 (ex-Kiên Giang).
LEGACY_TO_CURRENT_PROVINCE: Final[dict[str, str]] = {
    "001": "01",  # Hà Nội -> Thành phố Hà Nội (unchanged)
    "002": "08",  # Hà Giang -> Tuyên Quang
    "004": "04",  # Cao Bằng (unchanged)
    "006": "19",  # Bắc Kạn -> Thái Nguyên
    "008": "08",  # Tuyên Quang
    "010": "15",  # Lào Cai -> Lào Cai (code 15)
    "011": "11",  # Điện Biên (unchanged)
    "012": "12",  # Lai Châu (unchanged)
    "014": "14",  # Sơn La (unchanged)
    "015": "15",  # Yên Bái -> Lào Cai
    "017": "25",  # Hòa Bình -> Phú Thọ
    "019": "19",  # Thái Nguyên
    "020": "20",  # Lạng Sơn (unchanged)
    "022": "22",  # Quảng Ninh (unchanged)
    "024": "24",  # Bắc Giang -> Bắc Ninh
    "025": "25",  # Phú Thọ
    "026": "25",  # Vĩnh Phúc -> Phú Thọ
    "027": "24",  # Bắc Ninh -> Bắc Ninh (code 24)
    "030": "31",  # Hải Dương -> Thành phố Hải Phòng
    "031": "31",  # Hải Phòng
    "033": "33",  # Hưng Yên
    "034": "33",  # Thái Bình -> Hưng Yên
    "035": "37",  # Hà Nam -> Ninh Bình
    "036": "37",  # Nam Định -> Ninh Bình
    "037": "37",  # Ninh Bình
    "038": "38",  # Thanh Hóa (unchanged)
    "040": "40",  # Nghệ An (unchanged)
    "042": "42",  # Hà Tĩnh (unchanged)
    "044": "44",  # Quảng Bình -> Quảng Trị
    "045": "44",  # Quảng Trị -> Quảng Trị (code 44)
    "046": "46",  # Thừa Thiên Huế -> Thành phố Huế (unchanged territory)
    "048": "48",  # Đà Nẵng
    "049": "48",  # Quảng Nam -> Thành phố Đà Nẵng
    "051": "51",  # Quảng Ngãi
    "052": "52",  # Bình Định -> Gia Lai
    "054": "66",  # Phú Yên -> Đắk Lắk
    "056": "56",  # Khánh Hòa
    "058": "56",  # Ninh Thuận -> Khánh Hòa
    "060": "68",  # Bình Thuận -> Lâm Đồng
    "062": "51",  # Kon Tum -> Quảng Ngãi
    "064": "52",  # Gia Lai -> Gia Lai (code 52)
    "066": "66",  # Đắk Lắk
    "067": "68",  # Đắk Nông -> Lâm Đồng
    "068": "68",  # Lâm Đồng
    "070": "75",  # Bình Phước -> Đồng Nai
    "072": "80",  # Tây Ninh -> Tây Ninh (code 80)
    "074": "79",  # Bình Dương -> Thành phố Hồ Chí Minh
    "075": "75",  # Đồng Nai
    "077": "79",  # Bà Rịa - Vũng Tàu -> Thành phố Hồ Chí Minh
    "079": "79",  # Hồ Chí Minh
    "080": "80",  # Long An -> Tây Ninh
    "082": "82",  # Tiền Giang -> Đồng Tháp
    "083": "86",  # Bến Tre -> Vĩnh Long
    "084": "86",  # Trà Vinh -> Vĩnh Long
    "086": "86",  # Vĩnh Long
    "087": "82",  # Đồng Tháp -> Đồng Tháp (code 82)
    "089": "91",  # An Giang -> An Giang (code 91)
    "091": "91",  # Kiên Giang -> An Giang
    "092": "92",  # Cần Thơ
    "093": "92",  # Hậu Giang -> Thành phố Cần Thơ
    "094": "92",  # Sóc Trăng -> Thành phố Cần Thơ
    "095": "96",  # Bạc Liêu -> Cà Mau
    "096": "96",  # Cà Mau
}

# --------------------------------------------------------------------------------------------------
# 9. Age and sex structure — 2019 census pyramid
# --------------------------------------------------------------------------------------------------

# (first age, last age, male share, female share) of the total population. Band totals approximate the
# census (0-14: 24.3%, 15-64: 68.0%, 65+: 7.7%); the split by sex reflects the high sex ratio at birth
# (about 111 boys per 100 girls) and women's longer lives. Overall: 99.1 males per 100 females.
# The last band is open-ended in the census (85+); 99 is the generator's cap.
_AGE_SEX_RAW: Final[tuple[tuple[int, int, float, float], ...]] = (
    (0, 4, 0.04261, 0.03839),
    (5, 9, 0.04514, 0.04086),
    (10, 14, 0.03964, 0.03636),
    (15, 19, 0.03412, 0.03188),
    (20, 24, 0.03569, 0.03431),
    (25, 29, 0.04090, 0.04010),
    (30, 34, 0.04271, 0.04229),
    (35, 39, 0.03910, 0.03890),
    (40, 44, 0.03691, 0.03709),
    (45, 49, 0.03357, 0.03443),
    (50, 54, 0.02972, 0.03128),
    (55, 59, 0.02540, 0.02760),
    (60, 64, 0.02060, 0.02340),
    (65, 69, 0.01352, 0.01648),
    (70, 74, 0.00808, 0.01092),
    (75, 79, 0.00477, 0.00723),
    (80, 84, 0.00305, 0.00545),
    (85, 99, 0.00233, 0.00517),
)


def _normalise_age_sex(
    rows: tuple[tuple[int, int, float, float], ...],
) -> tuple[tuple[int, int, float, float], ...]:
    flat = _normalise(tuple(x for _, _, m, f in rows for x in (m, f)), absorb=0)
    return tuple((lo, hi, flat[2 * i], flat[2 * i + 1]) for i, (lo, hi, _, _) in enumerate(rows))


AGE_SEX_STRUCTURE: Final[tuple[tuple[int, int, float, float], ...]] = _normalise_age_sex(_AGE_SEX_RAW)
"""(first age, last age, male share, female share); all shares together sum to 1."""


def age_band(age: int) -> int:
    """Index of the band of AGE_SEX_STRUCTURE an age in whole years falls in; the last band is open-ended."""
    for band, (_, last, _, _) in enumerate(AGE_SEX_STRUCTURE):
        if age <= last:
            return band
    return len(AGE_SEX_STRUCTURE) - 1


SEX_RATIO_AT_BIRTH: Final[float] = 111.5
"""Boys per 100 girls at birth, 2019 census."""

# --------------------------------------------------------------------------------------------------
# 10. Household size — 2019 census
# --------------------------------------------------------------------------------------------------

# 26.9 million households, mean 3.5 persons. The census publishes 1, 2, 3, 4, 5 and "6 or more"; the
# split of "6 or more" into 6, 7 and 8 is an estimate, and 8 stands for "8 or more".
HOUSEHOLD_SIZE: Final[tuple[tuple[int, float], ...]] = tuple(
    (size, share)
    for size, share in zip(
        range(1, 9),
        _normalise((0.096, 0.196, 0.214, 0.280, 0.120, 0.056, 0.022, 0.016), absorb=3),
        strict=True,
    )
)
"""(persons in the household, share of households); sums to 1."""

# --------------------------------------------------------------------------------------------------
# 11. Blood groups (nhóm máu)
# --------------------------------------------------------------------------------------------------

BLOOD_TYPES: Final[tuple[tuple[str, float], ...]] = _normalise_pairs(
    (("O", 0.42), ("B", 0.31), ("A", 0.22), ("AB", 0.05)), absorb=0
)
"""ABO group and share among Vietnamese; sums to 1."""

RH_NEGATIVE_SHARE: Final[float] = 0.001
"""Rh(D)-negative people, about 0.04-0.1% in Vietnamese series (far below the 15% of Europeans)."""

# --------------------------------------------------------------------------------------------------
# 12. Vital rates (per 1,000 people per year)
# --------------------------------------------------------------------------------------------------

CRUDE_BIRTH_RATE: Final[float] = 15.6
"""Live births per 1,000 people per year (GSO estimate for 2023; total fertility 1.96)."""

CRUDE_DEATH_RATE: Final[float] = 6.0
"""Deaths per 1,000 people per year (GSO estimate for 2023)."""

CRUDE_MARRIAGE_RATE: Final[float] = 7.0
"""Marriages per 1,000 people per year (estimate: roughly 650-700 thousand registrations a year)."""

MEAN_AGE_AT_FIRST_MARRIAGE_MALE: Final[float] = 27.2
"""Singulate mean age at marriage, men, 2019 census."""

MEAN_AGE_AT_FIRST_MARRIAGE_FEMALE: Final[float] = 23.0
"""Singulate mean age at marriage, women, 2019 census."""
