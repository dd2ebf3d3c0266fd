"""Vocabulary shared by every message: channels, stages, touchpoint types, emotions."""

from enum import StrEnum


class Channel(StrEnum):
    PAID_SEARCH = "paid_search"
    PAID_SOCIAL = "paid_social"
    DISPLAY = "display"
    ORGANIC_SEARCH = "organic_search"
    ORGANIC_SOCIAL = "organic_social"
    EMAIL = "email"
    WEB = "web"
    REFERRAL = "referral"
    DIRECT = "direct"
    PHONE = "phone"
    POSTAL = "postal"
    IN_PERSON = "in_person"
    CALL_CENTRE = "call_centre"
    WEBINAR = "webinar"
    VIDEO = "video"
    WEBHOOK = "webhook"
    OTHER = "other"


class Stage(StrEnum):
    """The default six funnel stages; journeys may name their own."""

    STRANGER = "stranger"
    VISITOR = "visitor"
    CONTACT = "contact"
    PROSPECT = "prospect"
    CUSTOMER = "customer"
    PROMOTER = "promoter"


class TouchpointType(StrEnum):
    AD_CLICK = "ad_click"
    PAGE_VIEW = "page_view"
    FORM_SUBMITTED = "form_submitted"
    LEAD_CAPTURED = "lead_captured"
    EMAIL_OPENED = "email_opened"
    EMAIL_CLICKED = "email_clicked"
    VIDEO_PROGRESS = "video_progress"
    PDF_DOWNLOADED = "pdf_downloaded"
    WEBINAR_REGISTERED = "webinar_registered"
    WEBINAR_ATTENDED = "webinar_attended"
    CALL = "call"
    PURCHASE = "purchase"
    REFERRAL_MADE = "referral_made"
    FEEDBACK = "feedback"
    UNSUBSCRIBED = "unsubscribed"
    CUSTOM = "custom"


class Emotion(StrEnum):
    POSITIVE = "positive"
    NEUTRAL = "neutral"
    NEGATIVE = "negative"


class DeliveryStatus(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    BOUNCED = "bounced"
    RETRIED = "retried"


class ContentType(StrEnum):
    EMAIL = "email"
    VIDEO = "video"
    PDF = "pdf"
    WEBINAR_INVITE = "webinar_invite"
    EVENT_INVITE = "event_invite"
    SOCIAL_POST = "social_post"
